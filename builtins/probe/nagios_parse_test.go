package probe

import (
	"reflect"
	"testing"
)

func TestParseNagios(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		want     nagiosOutput
	}{
		{"text only", "PING OK - Packet loss = 0%\n", nagiosOutput{Text: "PING OK - Packet loss = 0%"}},
		{"one datum", "TCP OK - 0.000 second response time on 127.0.0.1 port 22|time=0.000113s;;;0.000000;10.000000\n",
			nagiosOutput{Text: "TCP OK - 0.000 second response time on 127.0.0.1 port 22",
				Perf: []perfDatum{{Label: "time", Value: "0.000113s", Min: "0.000000", Max: "10.000000"}}}},
		{"quoted labels and several data", "DISK OK | '/' =1B 'a b'=83%;80;90;0;100 'it''s'=U load1=0.5;1;2\n",
			nagiosOutput{Text: "DISK OK", Perf: []perfDatum{
				{Label: "a b", Value: "83%", Warn: "80", Crit: "90", Min: "0", Max: "100"},
				{Label: "it's", Value: "U"},
				{Label: "load1", Value: "0.5", Warn: "1", Crit: "2"},
			}}},
		{"long text and more perfdata", "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n/home=69357MB;253404;253409;0;253414 \n/var/log=818MB;970;975;0;980\n",
			nagiosOutput{Text: "DISK OK - free space: / 3326 MB (56%);",
				Long: "/ 15272 MB (77%);\n/boot 68 MB (69%);\n/home 69357 MB (27%);\n/var/log 819 MB (84%);",
				Perf: []perfDatum{
					{Label: "/", Value: "2643MB", Warn: "5948", Crit: "5958", Min: "0", Max: "5968"},
					{Label: "/boot", Value: "68MB", Warn: "88", Crit: "93", Min: "0", Max: "98"},
					{Label: "/home", Value: "69357MB", Warn: "253404", Crit: "253409", Min: "0", Max: "253414"},
					{Label: "/var/log", Value: "818MB", Warn: "970", Crit: "975", Min: "0", Max: "980"},
				}}},
		{"empty", "", nagiosOutput{}},
	}
	for _, tc := range cases {
		got := parseNagios(tc.in)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.name, got, tc.want)
		}
	}
}
