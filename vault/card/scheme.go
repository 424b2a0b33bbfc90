package card

// Scheme is a card brand (payment network) as detected from a PAN's IIN.
type Scheme string

// The schemes DetectScheme knows. The values are stored and sent to clients.
const (
	SchemeVisa       Scheme = "VISA"
	SchemeMastercard Scheme = "Mastercard"
	SchemeAmex       Scheme = "American Express"
	SchemeDiscover   Scheme = "Discover"
	SchemeDiners     Scheme = "Diners Club"
	SchemeJCB        Scheme = "JCB"
	SchemeUnionPay   Scheme = "UnionPay"
	SchemeMaestro    Scheme = "Maestro"
	SchemeUnknown    Scheme = "Unknown"
)

// iinRange is a run of IIN prefixes, lo to hi inclusive, all of width
// digits, that belongs to one scheme.
type iinRange struct {
	width  int
	lo, hi int
	scheme Scheme
}

// iinTable is the table DetectScheme documents. It is searched in order and
// the first match wins; the only overlap is Discover's 622126–622925 inside
// UnionPay's 62, so that row comes first.
var iinTable = [...]iinRange{
	{1, 4, 4, SchemeVisa},
	{2, 34, 34, SchemeAmex},
	{2, 37, 37, SchemeAmex},
	{2, 51, 55, SchemeMastercard},
	{4, 2221, 2720, SchemeMastercard},
	{4, 6011, 6011, SchemeDiscover},
	{6, 622126, 622925, SchemeDiscover},
	{3, 644, 649, SchemeDiscover},
	{2, 65, 65, SchemeDiscover},
	{3, 300, 305, SchemeDiners},
	{3, 309, 309, SchemeDiners},
	{2, 36, 36, SchemeDiners},
	{2, 38, 39, SchemeDiners},
	{4, 3528, 3589, SchemeJCB},
	{2, 62, 62, SchemeUnionPay},
	{2, 81, 81, SchemeUnionPay},
	{2, 50, 50, SchemeMaestro},
	{2, 56, 58, SchemeMaestro},
	{4, 6304, 6304, SchemeMaestro},
	{4, 6390, 6390, SchemeMaestro},
	{2, 67, 67, SchemeMaestro},
}

// DetectScheme returns the scheme of a card number from its leading digits,
// or SchemeUnknown when no range matches, digits is empty or a needed
// leading character is not an ASCII digit. It never fails otherwise and
// does not check the length or the Luhn digit. The IIN table, checked in
// this order (first match wins):
//
//	VISA              4
//	American Express  34, 37
//	Mastercard        51–55, 2221–2720
//	Discover          6011, 622126–622925 (UnionPay co-brand), 644–649, 65
//	Diners Club       300–305, 309, 36, 38–39
//	JCB               3528–3589
//	UnionPay          62 (outside 622126–622925), 81
//	Maestro           50, 56–58, 6304, 6390, 67 (incl. 6759, 676770, 676774)
//
// The ranges are disjoint apart from the Discover co-brand inside 62, so no
// length rule is needed to tell brands apart.
func DetectScheme(digits string) Scheme {
	return detectScheme(digits)
}

// detectScheme is DetectScheme for strings and byte slices.
func detectScheme[T ~string | ~[]byte](digits T) Scheme {
	for _, r := range iinTable {
		if v := leadingNumber(digits, r.width); v >= r.lo && v <= r.hi {
			return r.scheme
		}
	}
	return SchemeUnknown
}

// leadingNumber returns the decimal value of the first width characters of
// digits, or -1 when digits is shorter than width or one of them is not an
// ASCII digit.
func leadingNumber[T ~string | ~[]byte](digits T, width int) int {
	if len(digits) < width {
		return -1
	}
	v := 0
	for i := 0; i < width; i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	return v
}
