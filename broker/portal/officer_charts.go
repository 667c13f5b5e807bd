package portal

import (
	"fmt"
	"strconv"
)

// The trends charts are drawn here as plain SVG, inline in the page: bars
// with class names, coloured by the portal's style sheet. A charting
// library was considered (github.com/wcharczuk/go-chart/v2), but its SVG
// carries style attributes, which the portal's Content-Security-Policy
// (style-src 'self', no 'unsafe-inline') refuses, and it draws text as
// paths a screen reader cannot use. Each chart is an image with a title
// (role="img"), and its numbers are the table beside it.

// chart is one grouped bar chart: for each key, a bar per metric.
type chart struct {
	ID       string // stable: chart-day, chart-legal_basis, chart-agency
	GroupBy  string
	CSV      string // the download of its numbers
	Title    string
	Groups   []statGroup
	Width    int
	Height   int
	Bars     []bar
	Labels   []axisLabel
	Ticks    []axisLabel
	Max      int
	Baseline int
	Legend   []legendItem
}

type bar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

type axisLabel struct {
	X, Y int
	Text string
}

type legendItem struct {
	Key, Class string
}

const (
	chartLeft   = 40
	chartTop    = 10
	chartPlotH  = 160
	chartBottom = 50
	barW        = 6
	groupGap    = 10
)

func newChart(lang, groupBy string, groups []statGroup) chart {
	c := chart{ID: "chart-" + groupBy, GroupBy: groupBy, Title: text(lang, "off.trends.by."+groupBy)}
	c.Groups = make([]statGroup, len(groups))
	for i, g := range groups {
		g.Label = g.Key
		if g.Key == "" {
			g.Label = text(lang, "off.group.none."+groupBy)
		}
		c.Groups[i] = g
		for _, v := range g.values() {
			c.Max = max(c.Max, v)
		}
	}
	scale := max(c.Max, 1)
	groupW := len(statMetrics)*barW + groupGap
	c.Width = chartLeft + max(len(groups), 1)*groupW + 10
	c.Height = chartTop + chartPlotH + chartBottom
	c.Baseline = chartTop + chartPlotH
	for i, g := range c.Groups {
		x0 := chartLeft + i*groupW + groupGap/2
		for j, v := range g.values() {
			h := v * chartPlotH / scale
			c.Bars = append(c.Bars, bar{X: x0 + j*barW, Y: c.Baseline - h, W: barW - 1, H: h,
				Class: "bar-" + statMetrics[j], Title: fmt.Sprintf("%s, %s: %d", g.Label, text(lang, "off.metric."+statMetrics[j]), v)})
		}
		label := g.Label
		if groupBy == "day" && len(g.Key) >= 10 {
			label = label[8:10] + "." + label[5:7]
		}
		c.Labels = append(c.Labels, axisLabel{X: x0 + len(statMetrics)*barW/2, Y: c.Baseline + 14, Text: label})
	}
	for _, v := range []int{0, scale / 2, scale} {
		c.Ticks = append(c.Ticks, axisLabel{X: chartLeft - 4, Y: c.Baseline - v*chartPlotH/scale + 4, Text: strconv.Itoa(v)})
	}
	for _, m := range statMetrics {
		c.Legend = append(c.Legend, legendItem{Key: "off.metric." + m, Class: "bar-" + m})
	}
	return c
}
