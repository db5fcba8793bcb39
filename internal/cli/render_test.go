package cli

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestBarCells(t *testing.T) {
	tests := []struct {
		name   string
		counts []int // updated, failed, in progress
		total  int
		want   []int // updated, failed, in progress, rest
	}{
		{"empty batch", []int{0, 0, 0}, 0, []int{0, 0, 0, 24}},
		{"nothing reported", []int{0, 0, 5}, 5, []int{0, 0, 24, 0}},
		{"all updated", []int{7, 0, 0}, 7, []int{24, 0, 0, 0}},
		{"thirds", []int{1, 1, 1}, 3, []int{8, 8, 8, 0}},
		{"one failure in thousands stays visible", []int{4999, 1, 0}, 5000, []int{23, 1, 0, 0}},
		{"pending rest", []int{1, 0, 0}, 4, []int{6, 0, 0, 18}},
		{"rounding fills the bar when all have outcomes", []int{5, 1, 1}, 7, []int{17, 4, 3, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := barCells(tt.counts, tt.total, barWidth)
			g.Expect(got).To(Equal(tt.want))
			sum := 0
			for _, c := range got {
				sum += c
			}
			g.Expect(sum).To(Equal(barWidth))
		})
	}
}
