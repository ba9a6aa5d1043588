package main

import (
	"fmt"
	"slices"
	"time"
)

// summary is the median and range of one measure over the repetitions.
type summary struct {
	med, min, max float64
	n             int
}

func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{med: m, min: s[0], max: s[len(s)-1], n: len(s)}
}

// format prints "med (min–max)" with the given verb; one sample prints alone.
func (s summary) format(verb string) string {
	if s.n == 0 {
		return "–"
	}
	if s.n == 1 {
		return fmt.Sprintf(verb, s.med)
	}
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.med, s.min, s.max)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
