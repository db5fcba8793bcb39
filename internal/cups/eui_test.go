package cups

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestParseEUI(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // device id; empty means an error is expected
	}{
		{"ID6 as the real station sends it", "11:22ff:fe33:4455", "001122FFFE334455"},
		{"ID6 with every group written", "0011:22ff:fe33:4455", "001122FFFE334455"},
		{"ID6 upper case", "11:22FF:FE33:4455", "001122FFFE334455"},
		{"ID6 leading zero groups compressed", "::1", "0000000000000001"},
		{"ID6 trailing zero groups compressed", "1::", "0001000000000000"},
		{"ID6 middle zero groups compressed", "1::2", "0001000000000002"},
		{"ID6 one zero group compressed", "1:2::3", "0001000200000003"},
		{"ID6 all zero", "::", "0000000000000000"},
		{"ID6 maps groups, not bytes", "a:b:c:d", "000A000B000C000D"},
		{"plain hex", "001122FFFE334455", "001122FFFE334455"},
		{"plain hex lower case", "001122fffe334455", "001122FFFE334455"},
		{"dash-separated bytes", "00-11-22-FF-FE-33-44-55", "001122FFFE334455"},
		{"dash-separated one-digit bytes", "0-11-22-ff-fe-33-44-5", "001122FFFE334405"},
		{"colon-separated bytes", "00:11:22:ff:fe:33:44:55", "001122FFFE334455"},
		{"empty", "", ""},
		{"ID6 with five groups", "1:2:3:4:5", ""},
		{"ID6 with three groups and no ::", "1:2:3", ""},
		{"ID6 with two ::", "1::2::3", ""},
		{"ID6 :: standing for no group", "1:2::3:4", ""},
		{"ID6 group of five digits", "11111:2:3:4", ""},
		{"ID6 empty group", "1:2:3:", ""},
		{"non-hex digit", "00112233445566GG", ""},
		{"15 hex digits", "00112233445566F", ""},
		{"17 hex digits", "00112233445566FF0", ""},
		{"seven dash bytes", "00-11-22-FF-FE-33-44", ""},
		{"dash byte of three digits", "00-11-22-FF-FE-33-44-555", ""},
		{"mixed separators", "00-11:22-FF-FE-33-44-55", ""},
		{"space", " 11:22ff:fe33:4455", ""},
		{"sign", "+11:22ff:fe33:4455", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := ParseEUI(tt.in)
			if tt.want == "" {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.DeviceID()).To(Equal(tt.want))
			back, err := ParseEUI(e.String())
			g.Expect(err).NotTo(HaveOccurred(), "ID6 form %q must parse back", e.String())
			g.Expect(back).To(Equal(e))
		})
	}
}

func TestEUIString(t *testing.T) {
	g := NewWithT(t)
	g.Expect(EUI(0x001122FFFE334455).String()).To(Equal("11:22ff:fe33:4455"))
}

// TestID6PlainTakesWhatStationsWrite: the one-pass reader takes the router
// ids stations write (four uncompressed groups) and leaves every other form,
// and every error, to the general parser.
func TestID6PlainTakesWhatStationsWrite(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string]EUI{
		"11:22ff:fe33:4455": 0x001122FFFE334455, "0011:22FF:fe33:4455": 0x001122FFFE334455,
		"a:b:c:d": 0x000A000B000C000D, "ffff:ffff:ffff:ffff": 0xFFFFFFFFFFFFFFFF, "0:0:0:0": 0,
	} {
		e, ok := id6Plain(in)
		g.Expect(ok).To(BeTrue(), in)
		g.Expect(e).To(Equal(want), in)
	}
	for _, in := range []string{"", "::1", "1::", "1:2:3", "1:2:3:4:5", "1:2:3:", ":1:2:3", "1::2:3",
		"11111:2:3:4", "1:2:3:g", "001122FFFE334455", "00-11-22-FF-FE-33-44-55", "00:11:22:ff:fe:33:44:55", " 1:2:3:4"} {
		_, ok := id6Plain(in)
		g.Expect(ok).To(BeFalse(), in)
	}
}

// FuzzID6PlainMatchesGeneral: wherever the one-pass reader accepts a
// string, the general parser accepts it too and reads the same EUI.
func FuzzID6PlainMatchesGeneral(f *testing.F) {
	for _, s := range []string{"11:22ff:fe33:4455", "a:b:c:d", "1:2:3:4:5", "::1", "1:2:3:", "11111:2:3:4", "0:0:0:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := id6Plain(s)
		if !ok {
			return
		}
		general, err := parseEUI(s)
		if err != nil || general != fast {
			t.Fatalf("id6Plain(%q) = %016X, the general parser %016X, %v", s, uint64(fast), uint64(general), err)
		}
	})
}

// BenchmarkParseEUI reads a station's router id in one pass (ParseEUI)
// beside the general parser (baseline, the same run).
func BenchmarkParseEUI(b *testing.B) {
	const id = "b827:ebff:fe61:4f7"
	for _, bc := range []struct {
		name  string
		parse func(string) (EUI, error)
	}{{"one-pass", ParseEUI}, {"general", parseEUI}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.parse(id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
