package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// jsonObject is a JSON document made of several values, for commands that
// print more than one message. Values are proto messages or plain Go values.
type jsonObject map[string]any

// render prints a command's result: doc as exactly one JSON document with
// -o json, else the lines table writes, tab-separated cells aligned in
// columns.
func (g *globals) render(doc any, table func(w io.Writer)) error {
	if g.output == outputJSON {
		return writeJSON(g.stdout, doc)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	table(tw)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func writeJSON(w io.Writer, doc any) error {
	raw, err := marshalJSON(doc)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	out.WriteByte('\n')
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// marshalJSON encodes proto messages with protojson (field names in
// lowerCamelCase, 64-bit integers as strings, every field present) and
// anything else with encoding/json.
func marshalJSON(v any) (json.RawMessage, error) {
	switch v := v.(type) {
	case proto.Message:
		return protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(v)
	case jsonObject:
		fields := make(map[string]json.RawMessage, len(v))
		for k, field := range v {
			raw, err := marshalJSON(field)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			fields[k] = raw
		}
		return json.Marshal(fields)
	default:
		return json.Marshal(v)
	}
}

// row writes one table row.
func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	io.WriteString(w, "\n")
}

// enumName turns a proto enum name into what a user types and reads:
// CAMPAIGN_KIND_FLASH_SALE -> flash-sale; the zero value reads "-".
func enumName(name, prefix string) string {
	name = strings.TrimPrefix(name, prefix)
	if name == "UNSPECIFIED" {
		return "-"
	}
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// enumValue is enumName's inverse: flash-sale -> the value of
// CAMPAIGN_KIND_FLASH_SALE in values; the zero value is never accepted.
func enumValue(s, prefix string, values map[string]int32) (int32, bool) {
	v, ok := values[prefix+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	return v, ok && v != 0
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func formatDuration(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().String()
}

// formatAge says how long ago ts was, to the millisecond.
func formatAge(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	return now.Sub(ts.AsTime()).Round(time.Millisecond).String()
}

// dash shows an empty string as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
