package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"

	"github.com/sessionbus/sessionbus/events"
)

// The grace store keeps the reply of a refresh for a retry of it. Sealed
// with a key derived from the refresh token that was presented, it can be
// opened only by someone who presents that token again: the store (and
// its backups) holds no usable token.

func graceKey(token string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(token), nil, "sessionbus grace reply v1", 32)
}

func sealGrace(token string, reply events.TokenReply) ([]byte, error) {
	plain, err := json.Marshal(reply)
	if err != nil {
		return nil, err
	}
	aead, err := graceAEAD(token)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plain, nil), nil
}

func openGrace(token string, sealed []byte) (events.TokenReply, error) {
	aead, err := graceAEAD(token)
	if err != nil {
		return events.TokenReply{}, err
	}
	if len(sealed) < aead.NonceSize() {
		return events.TokenReply{}, errors.New("sealed reply too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], nil)
	if err != nil {
		return events.TokenReply{}, err
	}
	var r events.TokenReply
	err = json.Unmarshal(plain, &r)
	return r, err
}

func graceAEAD(token string) (cipher.AEAD, error) {
	key, err := graceKey(token)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
