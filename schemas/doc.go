// Package schemas holds the JSON Schemas (draft 2020-12) of the data of
// every sessionbus fact and of every command's request and reply, and an
// AsyncAPI 3.0 document of the NATS channels, all embedded in FS.
//
// The file of a fact's schema is named like its type without the
// io.sessionbus. prefix (session.created.v1.json); its $id, Base plus the
// file name, is the ce-dataschema of the fact. Command schemas live under
// commands/: the request of auth.cmd.login is
// commands/login.requested.v1.json (named after its CloudEvent type), the
// replies are commands/<shape>.reply.v1.json. Every $id is Base plus the
// file's path in FS, so relative references resolve the same in FS and on
// the web.
//
// Fact schemas allow unknown properties, because a v1 shape may gain
// optional fields and older readers must keep working; they refuse
// property names that suggest a secret, because facts are stored. Command
// requests are strict and bounded: they come from outside and may carry a
// secret. Replies, like facts, tolerate added fields.
//
// It is the published contract and a test oracle, not a run-time check:
// no production code imports it. Package events encodes and decodes with
// its own Go types; the tests of this package keep the schemas in step
// with them (types, subjects, reasons, Base and events.SchemaBase), and
// the tests of session and consumers/audit validate the facts and replies
// they see against it. It imports nothing of sessionbus outside its
// tests.
package schemas
