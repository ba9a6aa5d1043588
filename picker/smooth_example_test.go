package picker_test

import (
	"fmt"

	"go-loadbalancer/picker"
)

func ExampleNewSmooth() {
	names := []string{"a", "b", "c"}
	s := picker.NewSmooth([]int{3, 2, 1})
	var picks []string
	for range s.Len() {
		picks = append(picks, names[s.Next()])
	}
	fmt.Println(picks)

	// With b unavailable, the others keep their order: a b a c b a minus b.
	up := []bool{true, false, true}
	picks = picks[:0]
	for range 4 {
		picks = append(picks, names[s.Pick(func(i int) bool { return up[i] })])
	}
	fmt.Println(picks)
	// Output:
	// [a b a c b a]
	// [a a c a]
}
