package crypto_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardvault/cardvault/crypto"
)

func TestCiphertextFormatting(t *testing.T) {
	s := newSealer(t, newDataKeyset(t))
	c := seal(t, s, []byte(samplePAN), crypto.FieldAD(tenantA, tokenA, "number"))
	want := fmt.Sprintf("Ciphertext(%d bytes)", len(c))
	forbidden := []string{
		samplePAN,
		hex.EncodeToString(c[5:9]),
		strings.ToUpper(hex.EncodeToString(c[5:9])),
		base64.StdEncoding.EncodeToString(c)[8:16],
		fmt.Sprint([]byte(c)[5:9])[1:8],
		string(c[5:9]),
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%c", "%U", "%e", "%08.3f", "%T %v"}
	for _, verb := range verbs {
		t.Run(verb, func(t *testing.T) {
			got := fmt.Sprintf(verb, c)
			for _, f := range forbidden {
				assert.NotContains(t, got, f)
			}
		})
	}
	assert.Equal(t, want, c.String())
	assert.Equal(t, want, c.GoString())
	assert.Equal(t, want, fmt.Sprintf("%v", c))
	assert.Equal(t, want, fmt.Sprintf("%#v", c))
	assert.Equal(t, want, fmt.Sprintf("%d", c))
	assert.Equal(t, "{"+want+"}", fmt.Sprintf("%v", struct{ C crypto.Ciphertext }{c}))
	assert.Equal(t, "["+want+"]", fmt.Sprintf("%d", []crypto.Ciphertext{c}))
}

func TestCiphertextKeyID(t *testing.T) {
	tests := []struct {
		name    string
		c       crypto.Ciphertext
		want    uint32
		wantErr bool
	}{
		{"nil", nil, 0, true},
		{"shorter than prefix", crypto.Ciphertext{0x01, 0, 0, 1}, 0, true},
		{"legacy prefix", crypto.Ciphertext{0x00, 0, 0, 0, 1}, 0, true},
		{"prefix only", crypto.Ciphertext{0x01, 0x12, 0x34, 0x56, 0x78}, 0x12345678, false},
		{"prefix and data", crypto.Ciphertext{0x01, 0xff, 0, 0, 1, 9, 9}, 0xff000001, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.KeyID()
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}
