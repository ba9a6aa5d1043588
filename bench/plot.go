package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// plotLatency draws the open-loop p50 (dashed) and p99 (solid) latency, medians over the
// repetitions, against the offered rate, one colour per target, as a PNG.
func (r *report) plotLatency(path string) error {
	pl := plot.New()
	pl.Title.Text = "Open-loop latency vs offered rate (vegeta, median of repetitions)"
	pl.X.Label.Text = "offered rate (requests/s)"
	pl.Y.Label.Text = "latency (ms, log scale): p99 solid, p50 dashed"
	pl.Y.Scale = plot.LogScale{}
	pl.Y.Tick.Marker = plot.TickerFunc(ticks125)
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Legend.XOffs = vg.Points(8)
	pl.X.Min = 0
	for _, rate := range r.o.rates {
		pl.X.Max = max(pl.X.Max, float64(rate)*1.05)
	}
	pl.Add(plotter.NewGrid())

	for i, name := range r.targetNames() {
		var p50, p99 plotter.XYs
		for _, rate := range r.o.rates {
			var a, b []float64
			for _, run := range r.open {
				if run.target == name && run.rate == rate {
					a = append(a, ms(run.res.p50))
					b = append(b, ms(run.res.p99))
				}
			}
			if len(a) == 0 {
				continue
			}
			// A log axis cannot show 0; the floor is a microsecond.
			p50 = append(p50, plotter.XY{X: float64(rate), Y: max(summarize(a).med, 0.001)})
			p99 = append(p99, plotter.XY{X: float64(rate), Y: max(summarize(b).med, 0.001)})
		}
		if len(p99) == 0 {
			continue
		}
		col := plotutil.Color(i)
		l99, s99, err := plotter.NewLinePoints(p99)
		if err != nil {
			return err
		}
		l99.Color, s99.Color = col, col
		l99.Width = vg.Points(1.5)
		s99.Shape = draw.CircleGlyph{}
		l50, s50, err := plotter.NewLinePoints(p50)
		if err != nil {
			return err
		}
		l50.Color, s50.Color = col, col
		l50.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		s50.Shape = draw.TriangleGlyph{}
		pl.Add(l99, s99, l50, s50)
		pl.Legend.Add(name, l99, s99)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := pl.Save(7*vg.Inch, 4*vg.Inch, path); err != nil {
		return fmt.Errorf("cannot save plot %q: %w", path, err)
	}
	return nil
}

// ticks125 labels a log axis at 1, 2 and 5 of each decade between min and max.
func ticks125(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for d := math.Pow(10, math.Floor(math.Log10(min))); d <= max; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v >= min && v <= max {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
}
