import { describe, expect, it } from "vitest";
import { parsePrometheusText } from "../../../test/prometheus-text.ts";
import { ManualClock } from "../clock.ts";
import { Metrics } from "./metrics.ts";
import { prometheusText } from "./prometheus.ts";

describe("prometheusText", () => {
  it("renders a strictly valid exposition with a histogram per result", () => {
    const timer = new ManualClock(0);
    const metrics = new Metrics(new ManualClock(0), timer);
    const started = metrics.started();
    timer.advance(3);
    metrics.count("miss", "k", started);
    const text = prometheusText({
      scope: "process",
      counters: metrics,
      latency: metrics.latency,
      guard: { breaker: "closed", inFlight: 0, queued: 0 },
      inFlightHelp: "In flight.",
    });
    const families = parsePrometheusText(text);
    expect(families.get("herdless_request_duration_seconds")?.type).toBe("histogram");
    expect(text).toContain('herdless_request_duration_seconds_bucket{result="miss",le="0.0025"} 0\n');
    expect(text).toContain('herdless_request_duration_seconds_bucket{result="miss",le="0.005"} 1\n');
  });

  it("the strict reader rejects what Prometheus would (so the endpoint tests can fail)", () => {
    const histogram = (buckets: string) =>
      `# HELP h_seconds x\n# TYPE h_seconds histogram\n${buckets}h_seconds_sum 1\nh_seconds_count 2\n`;
    expect(() => parsePrometheusText(histogram('h_seconds_bucket{le="1"} 2\nh_seconds_bucket{le="+Inf"} 1\n'))).toThrow(
      /not cumulative/,
    );
    expect(() => parsePrometheusText(histogram('h_seconds_bucket{le="1"} 2\n'))).toThrow(/no \+Inf/);
    expect(() => parsePrometheusText("# TYPE a counter\na 1\n")).toThrow(/must end in _total/);
    expect(() => parsePrometheusText('# TYPE a_total counter\na_total{x="1} 1\n')).toThrow(/bad labels|not a sample/);
    expect(() => parsePrometheusText("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n")).toThrow(/two places/);
    expect(() => parsePrometheusText("# TYPE a gauge\na 1")).toThrow(/newline/);
  });
});
