package stack

import (
	"math"

	"github.com/philotes/philotes/deployments/pulumi/pkg/providers"
)

// Estimate is a stack's monthly cost from the provider's dated price table: at the pools'
// min (what `pulumi up` creates) and at their max (what the budget is checked against, so
// growing a pool never breaks the budget).
type Estimate struct {
	Currency        string               `json:"currency"`
	LinesAtMin      []providers.CostLine `json:"linesAtMin"`
	MonthlyAtMinEUR float64              `json:"monthlyAtMinEur"`
	MonthlyAtMaxEUR float64              `json:"monthlyAtMaxEur"`
	BudgetEUR       float64              `json:"budgetEur"`
	WithinBudget    bool                 `json:"withinBudget"`
	PriceDates      []string             `json:"priceDates"`
	Sources         []string             `json:"sources"`
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }

// EstimateCost prices the server, the pools and the provider's fixed costs.
func EstimateCost(p providers.CloudProvider, server providers.NodePool, pools []providers.NodePool, budget float64) Estimate {
	lines := func(atMax bool) []providers.CostLine {
		var out []providers.CostLine
		add := func(item, typ string, n int) {
			t, _ := providers.FindInstanceType(p, typ)
			out = append(out, providers.CostLine{Item: item + " (" + typ + ")", Count: n, UnitEUR: t.MonthlyEUR,
				PriceDate: t.PriceDate, Source: t.PriceSource, MonthlyEUR: round2(float64(n) * t.MonthlyEUR)})
		}
		add("K3s server", server.InstanceType, 1)
		nodes := 1
		for _, pool := range pools {
			n := pool.Min
			if atMax {
				n = pool.Max
			}
			nodes += n
			add("pool "+pool.Name, pool.InstanceType, n)
		}
		for _, l := range p.FixedCosts(nodes) {
			l.MonthlyEUR = round2(l.MonthlyEUR)
			out = append(out, l)
		}
		return out
	}
	sum := func(ls []providers.CostLine) float64 {
		t := 0.0
		for _, l := range ls {
			t += l.MonthlyEUR
		}
		return round2(t)
	}
	atMin, atMax := lines(false), lines(true)
	e := Estimate{Currency: "EUR", LinesAtMin: atMin, MonthlyAtMinEUR: sum(atMin), MonthlyAtMaxEUR: sum(atMax), BudgetEUR: budget}
	e.WithinBudget = e.MonthlyAtMaxEUR <= budget
	seenD, seenS := map[string]bool{}, map[string]bool{}
	for _, l := range atMax {
		if !seenD[l.PriceDate] {
			seenD[l.PriceDate] = true
			e.PriceDates = append(e.PriceDates, l.PriceDate)
		}
		if !seenS[l.Source] {
			seenS[l.Source] = true
			e.Sources = append(e.Sources, l.Source)
		}
	}
	return e
}
