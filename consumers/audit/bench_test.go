package audit_test

func stopBenchServer() {}
