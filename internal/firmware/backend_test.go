package firmware_test

import (
	"net/url"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/stationfleet/stationfleet/internal/firmware"
)

func backend(name string, schemes ...firmware.Scheme) *firmware.Backend {
	return &firmware.Backend{Name: name, Schemes: schemes, Enable: "set --" + name,
		Parse: func(u *url.URL, _ bool) (firmware.BlobURL, error) {
			return firmware.BlobURL{Scheme: u.Scheme, Path: u.Path}, nil
		}}
}

// TestRegistry: a scheme belongs to one backend; the lists in messages and
// help texts leave out endpoint-only schemes.
func TestRegistry(t *testing.T) {
	g := NewWithT(t)
	a := backend("a", firmware.Scheme{Name: "aa", Form: "aa://X"}, firmware.Scheme{Name: "ab", Form: "ab://X", EndpointOnly: true})
	b := backend("b", firmware.Scheme{Name: "bb", Form: "bb://X"})
	reg, err := firmware.NewRegistry(a, b)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(reg.Schemes()).To(Equal([]string{"aa", "bb"}))
	g.Expect(reg.Want()).To(Equal("aa:// or bb://"))
	g.Expect(reg.Forms("/")).To(Equal("aa://X/ or bb://X/"))
	got, ok := reg.Lookup("AB")
	g.Expect(ok).To(BeTrue())
	g.Expect(got).To(BeIdenticalTo(a))

	_, err = b.ParseURL("aa://host/x")
	g.Expect(err).To(MatchError(firmware.ErrInvalidURL))
	g.Expect(err).To(MatchError(ContainSubstring("b serves bb:// URLs")))

	_, err = firmware.NewRegistry(a, backend("c", firmware.Scheme{Name: "aa"}))
	g.Expect(err).To(MatchError(`firmware backends "a" and "c" both serve aa://`))
	_, err = firmware.NewRegistry(backend("d", firmware.Scheme{Name: "Dd"}))
	g.Expect(err).To(MatchError(ContainSubstring("want a lower-case scheme name")))
	_, err = firmware.NewRegistry(backend("e"))
	g.Expect(err).To(MatchError(ContainSubstring("needs schemes and a parser")))

	_, err = firmware.NewRouter(reg, firmware.Mount{Backend: backend("stranger", firmware.Scheme{Name: "zz"}), Store: nil})
	g.Expect(err).To(MatchError(ContainSubstring(`backend "stranger" is not registered or has no store`)))
}
