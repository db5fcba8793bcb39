package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// figure is one measured number of a row, beside its baseline and target.
type figure struct {
	row      string // DESIGN.md section 9 row
	name     string
	value    string
	baseline string // "-" when the target is absolute
	ratio    string
	target   string
	met      bool
	measured bool // false: the row failed before this figure was measured
}

// report collects figures and notes.
type report struct {
	figures []figure
	notes   []string
}

func (r *report) add(f figure) {
	f.measured = true
	if f.baseline == "" {
		f.baseline = "-"
	}
	if f.ratio == "" {
		f.ratio = "-"
	}
	r.figures = append(r.figures, f)
}

// fail records a row that could not be measured.
func (r *report) fail(row string, err error) {
	r.figures = append(r.figures, figure{row: row, name: "ERROR: " + err.Error(), value: "-", baseline: "-", ratio: "-", target: "-"})
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// write prints the table and the notes.
func (r *report) write(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tfigure\tmeasured\tbaseline (same run)\tratio\ttarget\tresult")
	fmt.Fprintln(tw, "---\t------\t--------\t-------------------\t-----\t------\t------")
	for _, f := range r.figures {
		res := "NOT MET"
		switch {
		case !f.measured:
			res = "NOT MEASURED"
		case f.met:
			res = "met"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.row, f.name, f.value, f.baseline, f.ratio, f.target, res)
	}
	_ = tw.Flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(out)
		for _, n := range r.notes {
			fmt.Fprintln(out, "- "+strings.ReplaceAll(n, "\n", "\n  "))
		}
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func kib(b int) string { return fmt.Sprintf("%.1f KiB", float64(b)/1024) }
