import { anomalyCountFrames, incidentsFrame, incidentsInRange, templatesFrame } from './frames';
import { anomaly, incident, template } from '../testing/fixtures';

const T0 = 1_699_999_980; // a whole minute: buckets align with the range

describe('anomalyCountFrames', () => {
  const rows = [
    anomaly({ ts: T0 + 5, service: 'a' }),
    anomaly({ ts: T0 + 15, service: 'a' }),
    anomaly({ ts: T0 + 65, service: 'b', reasons: [{ kind: 'rate', score: 1, text: 'x' }, { kind: 'novelty', score: 1, text: 'y' }] }),
    anomaly({ ts: T0 + 500, service: 'a' }), // after the range
  ];

  it('counts per bucket and service inside the range only', () => {
    const frames = anomalyCountFrames(rows, T0 * 1000, (T0 + 120) * 1000, 60_000, 'service', 'A');
    expect(frames.map((f) => f.name)).toEqual(['a', 'b']);
    const a = frames[0].fields[1].values;
    const b = frames[1].fields[1].values;
    expect(Array.from(a)).toEqual([2, 0]);
    expect(Array.from(b)).toEqual([0, 1]);
    expect(frames[0].fields[1].labels).toEqual({ service: 'a' });
  });

  it('counts a record under each of its reason kinds', () => {
    const frames = anomalyCountFrames(rows, T0 * 1000, (T0 + 120) * 1000, 60_000, 'reason', 'A');
    const byName = Object.fromEntries(frames.map((f) => [f.name, Array.from(f.fields[1].values)]));
    expect(byName).toEqual({ novelty: [2, 1], rate: [0, 1] });
  });
});

describe('incidents', () => {
  it('maps to annotation fields, open incidents end now', () => {
    const frame = incidentsFrame([incident({ explanation: { source: 'rules', summary: 'checkout fails payments' } })], 'A', 9_999_000);
    const field = (name: string) => frame.fields.find((f) => f.name === name)!.values[0];
    expect(field('time')).toBe(1_700_000_000_000);
    expect(field('timeEnd')).toBe(9_999_000);
    expect(field('title')).toBe('LogAnomaly in checkout (high)');
    expect(field('text')).toContain('checkout fails payments');
    expect(field('tags')).toEqual(['logguardian', 'checkout', 'high', 'LogAnomaly']);
  });

  it('keeps incidents overlapping the range', () => {
    const old = incident({ id: 'old', started_at: 100, last_seen: 200, resolved_at: 300, open: false });
    const open = incident({ id: 'open', started_at: 1000, resolved_at: null });
    const kept = incidentsInRange([old, open], 400_000, 2_000_000, 5_000_000).map((i) => i.id);
    expect(kept).toEqual(['open']);
  });
});

it('templatesFrame keeps state and counts', () => {
  const frame = templatesFrame([template({ state: 'suppressed', count: 7 })], 'A');
  expect(frame.fields.find((f) => f.name === 'state')!.values[0]).toBe('suppressed');
  expect(frame.fields.find((f) => f.name === 'count')!.values[0]).toBe(7);
  expect(frame.length).toBe(1);
});
