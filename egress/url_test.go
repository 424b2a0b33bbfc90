package egress

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url          string
		prod, dev    bool // accepted without / with allowLoopback
		reasonPrefix string
	}{
		{"https://api.processor.example/v1/payments", true, true, ""},
		{"HTTPS://API.Processor.Example/v1/payments", true, true, ""},
		{"https://api.processor.example:8443/x?y=1", true, true, ""},
		{"http://api.processor.example/v1", false, false, "URL scheme must be https"},
		{"ftp://api.processor.example/", false, false, "URL scheme must be https"},
		{"https://user:pw@api.processor.example/", false, false, "URL must not carry user information"},
		{"https://api.processor.example/#frag", false, false, "URL must not have a fragment"},
		{"https://api.processor.example/#", false, false, "URL must not have a fragment"},
		{"https://93.184.215.14/", false, false, "URL host must be a DNS name"},
		{"https://[2606:4700::1111]/", false, false, "URL host must be a DNS name"},
		{"https://10.0.0.1/", false, false, "URL host must be a DNS name"},
		{"https://2130706433/", false, false, "URL host must be a DNS name"},
		{"https://0x7f.1/", false, false, "URL host must be a DNS name"},
		{"https://127.1/", false, false, "URL host must be a DNS name"},
		{"https://intranet/", false, false, "URL host must be a DNS name"},
		{"https://api.processor.example./", false, false, "URL host must be a DNS name"},
		{"https://-bad.example/", false, false, "URL host must be a DNS name"},
		{"https://bad_name.example/", false, false, "URL host must be a DNS name"},
		{"https://xn--bcher-kva.example/", true, true, ""},
		{"https://bücher.example/", false, false, "URL host must be a DNS name"},
		{"https://api.processor.example:0/", false, false, "URL port must be"},
		{"https://api.processor.example:65536/", false, false, "URL port must be"},
		{"https://api.processor.example:/", false, false, "URL port must be"},
		{"https:api.processor.example", false, false, "URL must be absolute"},
		{"/relative/path", false, false, "URL must be absolute"},
		{"https://", false, false, "URL must be absolute"},
		{"https://exa mple.com/", false, false, "URL is not valid"},
		{"https://localhost/", false, true, "URL host must not be localhost"},
		{"https://LocalHost:8443/", false, true, "URL host must not be localhost"},
		{"http://localhost:8080/", false, true, "URL host must not be localhost"},
		{"https://127.0.0.1:8443/", false, true, "URL host must be a DNS name"},
		{"http://127.0.0.1:8080/", false, true, "URL host must be a DNS name"},
		{"http://[::1]:8080/", false, true, "URL host must be a DNS name"},
		{"https://[::ffff:127.0.0.1]/", false, true, "URL host must be a DNS name"},
		{"http://api.processor.example/", false, false, "URL scheme must be https"}, // http only for loopback, even in dev
		{"https://[fe80::1%25eth0]/", false, false, "URL host must be a DNS name"},
	}
	for _, tt := range tests {
		for _, dev := range []bool{false, true} {
			want := tt.prod
			if dev {
				want = tt.dev
			}
			err := CheckURL(tt.url, dev)
			if want {
				assert.NoError(t, err, "%s (dev %v)", tt.url, dev)
				continue
			}
			var ue *URLError
			if assert.True(t, errors.As(err, &ue), "%s (dev %v): %v", tt.url, dev, err) && !dev {
				assert.Contains(t, ue.Error(), tt.reasonPrefix, tt.url)
				assert.NotContains(t, ue.Error(), "processor", "the error never quotes the URL")
			}
		}
	}
}
