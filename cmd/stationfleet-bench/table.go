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
	measured bool   // false: the row failed before this figure was measured
	machine  string // load average and other processes' CPU while the row ran
}

// report collects figures and notes.
type report struct {
	figures []figure
	notes   []string
	mark    int // first figure of the row running
}

// begin marks the start of a row: the figures added until end get the
// machine's load during the row.
func (r *report) begin() { r.mark = len(r.figures) }

// end records the machine's load during the row in its figures.
func (r *report) end(machine string) {
	for i := r.mark; i < len(r.figures); i++ {
		r.figures[i].machine = machine
	}
	r.mark = len(r.figures)
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
	fmt.Fprintln(tw, "row\tfigure\tmeasured\tbaseline (same run)\tratio\ttarget\tresult\tmachine during the row")
	fmt.Fprintln(tw, "---\t------\t--------\t-------------------\t-----\t------\t------\t----------------------")
	for _, f := range r.figures {
		res := "NOT MET"
		switch {
		case !f.measured:
			res = "NOT MEASURED"
		case f.met:
			res = "met"
		}
		m := f.machine
		if m == "" {
			m = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.row, f.name, f.value, f.baseline, f.ratio, f.target, res, m)
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
