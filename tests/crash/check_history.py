#!/usr/bin/env python3
"""Judge a kill -9 run of spool from its histories alone (crash_load.c and test_kill9.c write
them; the line format is described at the top of crash_load.c).

Every line of every DIR/*.hist file carries a CLOCK_MONOTONIC time in ns, one clock for the
whole machine, so lines of different workers and the driver's kill records can be ordered.
A delivery's server-side moment is only known to lie between its reserve's invocation (`inv=`)
and its `got` line; the rules below flag only what is a violation for every moment within
those windows, so a slow client never makes a false alarm.

Rules (the contract of docs/DESIGN.md, "At-least-once"):
  phantom         a delivered body names a key no put ever sent
  failed-put      a put the server definitely refused (put.fail) was delivered
  altered         a delivered body's hash or length differs from what its put sent
  wrong-payload   a job id delivered with the body of another put than the one that got that id
  id-reused       one job id returned for two different puts
  put-twice       one put delivered under two job ids, or its retries (same idempotency key)
                  answered with different ids
  lost            a put whose OK was received never delivered, in the run or the drains
  vanished        a delivered job never acked although the drain found the queue empty (an
                  ack whose outcome is unknown, lost in a crash, counts as maybe acked)
  after-ack       a job delivered again by a reserve sent after an ack of it got OK
  stale-ack       an ack OK for a lease while another delivery of the job was handed out after
                  that lease's own delivery (so that lease had ended: its ack must fail)
  acked-twice     two acks OK with different leases for one job
  unexplained     a second delivery of a job with no end of the previous lease before it:
                  release or fail sent (and not refused), the connection closed or lost by its
                  holder, a kill of spoold, or the lease's TTR run out (from the latest of the
                  reserve and an OK'd touch)
  resurrected     a job delivered after a drain had found the queue empty (no put followed)
  attempts        a later delivery of a job with an attempt count not above the previous
                  one, with no kill between them (a restart may undercount: OPERATIONS.md)
  drain           a drain did not empty the queue in its time, or jobs went dead (max_attempts
                  is unlimited and nothing buries)
  format          a malformed line, an unknown event, or a missing header
  too-little      fewer kills or acknowledged puts than asked: the run proved nothing

Exit 0 if no rule is broken, 1 with a report of the first violations, 2 on bad arguments.
"""
import argparse
import glob
import os
import sys
from collections import defaultdict

HEADER = '# crash-history v1'
SHOWN_MAX = 20

# event -> the keys its line must carry
EVENTS = {
    'put.inv': ('key', 'hash', 'len', 'ttr'),
    'put.ok': ('key', 'id'), 'put.fail': ('key', 'err'), 'put.unknown': ('key', 'err'),
    'reserve.inv': ('n',), 'reserve.ok': ('count',),
    'reserve.fail': ('err',), 'reserve.unknown': ('err',),
    'got': ('id', 'lease', 'attempt', 'key', 'hash', 'len', 'inv'),
    'ack.inv': ('id', 'lease'), 'ack.ok': ('id', 'lease'),
    'ack.fail': ('id', 'lease', 'err'), 'ack.unknown': ('id', 'lease', 'err'),
    'release.inv': ('id', 'lease', 'kind'), 'release.ok': ('id', 'lease', 'kind'),
    'release.fail': ('id', 'lease', 'err'), 'release.unknown': ('id', 'lease', 'err'),
    'touch.inv': ('id', 'lease'), 'touch.ok': ('id', 'lease'),
    'touch.fail': ('id', 'lease', 'err'), 'touch.unknown': ('id', 'lease', 'err'),
    'expire': ('id', 'lease'), 'disconnect': ('ids',),
    'connect.ok': ('addr',), 'connect.fail': ('err',), 'connlost': ('err',),
    'stats.fail': ('err',),
    'drain.done': ('ready', 'delayed', 'reserved', 'dead'),
    'drain.incomplete': ('ready', 'delayed', 'reserved'),
    'kill': ('n', 'pid'), 'start': ('pid', 'addr'), 'phase': ('name',), 'stop': (),
}
INT_KEYS = ('id', 'lease', 'attempt', 'len', 'ttr', 'inv', 'count', 'n', 'ready', 'delayed',
            'reserved', 'dead')


class Event:
    __slots__ = ('t', 'name', 'f', 'worker', 'where', 'text')

    def __init__(self, t, name, fields, worker, where, text):
        self.t, self.name, self.f = t, name, fields
        self.worker, self.where, self.text = worker, where, text


class Report:
    def __init__(self):
        self.violations = []  # (rule, message, [events])

    def add(self, rule, message, *events):
        self.violations.append((rule, message, [e for e in events if e is not None]))


def parse_line(text, worker, where, report):
    parts = text.split()
    if len(parts) < 2 or not parts[0].isdigit() or parts[1] not in EVENTS:
        report.add('format', 'malformed line or unknown event: %r' % text)
        return None
    fields = {}
    for part in parts[2:]:
        k, sep, v = part.partition('=')
        if not sep:
            report.add('format', 'field without "=": %r' % text)
            return None
        fields[k] = v
    for k in EVENTS[parts[1]]:
        if k not in fields:
            report.add('format', 'line without %s=: %r' % (k, text))
            return None
    try:
        for k in INT_KEYS:
            if k in fields:
                fields[k] = int(fields[k])
    except ValueError:
        report.add('format', 'bad number: %r' % text)
        return None
    return Event(int(parts[0]), parts[1], fields, worker, where, text)


def load(directory, report):
    events = []
    files = sorted(glob.glob(os.path.join(directory, '*.hist')))
    if not files:
        report.add('format', 'no *.hist files in %s' % directory)
    for path in files:
        worker = os.path.basename(path)[:-len('.hist')]
        with open(path, encoding='utf-8', errors='replace') as f:
            lines = f.read().split('\n')
        if lines and lines[-1] == '':
            lines.pop()
        if not lines or not lines[0].startswith(HEADER):
            report.add('format', '%s: missing header %r' % (path, HEADER))
            continue
        for number, text in enumerate(lines[1:], start=2):
            if text.startswith('#'):  # a later run appending to the same file
                continue
            e = parse_line(text, worker, '%s:%d' % (os.path.basename(path), number), report)
            if e is not None:
                events.append(e)
    events.sort(key=lambda e: e.t)
    return events


class History:
    """The events, indexed the ways the rules need."""

    def __init__(self, events):
        self.events = events
        self.puts = {}                      # key -> put.inv event
        self.put_outcome = {}               # key -> its outcome (see put_settle)
        self.put_outcomes = defaultdict(list)  # key -> every outcome, retries included
        self.id_key = {}                    # id -> key (from put.ok)
        self.gots = defaultdict(list)       # id -> got events, by time
        self.lease_events = defaultdict(list)  # (id, lease) -> ack/release/touch/expire events
        self.acks_ok = defaultdict(list)    # id -> ack.ok events
        self.closes = defaultdict(list)     # worker -> times its connection closed or was lost
        self.kills = []                     # kill events
        self.starts = []                    # start events (the driver's)
        self.drains = []                    # drain.done / drain.incomplete events
        self.lease_slack_ms = 0             # see --lease-slack-ms
        self.retry_errors = []
        for e in events:
            self.index(e)
        for key, outcomes in self.put_outcomes.items():
            self.put_outcome[key] = put_settle(outcomes)

    def put_invoked(self, e):
        key = e.f['key']
        first = self.puts.get(key)
        if first is None:
            self.puts[key] = e
        elif e.f.get('idem') != '1' or first.f['hash'] != e.f['hash']:
            # Only a retry with the same idempotency key and body may send a key again.
            self.retry_errors.append((first, e))

    def index(self, e):
        n, f = e.name, e.f
        if n == 'put.inv':
            self.put_invoked(e)
        elif n in ('put.ok', 'put.fail', 'put.unknown'):
            self.put_outcomes[f['key']].append(e)
        elif n == 'got':
            self.gots[f['id']].append(e)
        elif n.split('.')[0] in ('ack', 'release', 'touch') or n == 'expire':
            self.lease_events[(f['id'], f['lease'])].append(e)
            if n == 'ack.ok':
                self.acks_ok[f['id']].append(e)
        elif n in ('disconnect', 'connlost'):
            self.closes[e.worker].append(e.t)
        elif n == 'kill':
            self.kills.append(e)
        elif n == 'start':
            self.starts.append(e.t)
        elif n.startswith('drain.'):
            self.drains.append(e)


def put_settle(outcomes):
    """One outcome for a put and its retries: OK if any try got OK (retries of a put with
    an idempotency key must answer the same id), else unknown if any try was, else refused."""
    for name in ('put.ok', 'put.unknown', 'put.fail'):
        for e in outcomes:
            if e.name == name:
                return e
    return None


def check_payloads(h, report):
    ids_of_key = defaultdict(set)
    for first, again in h.retry_errors:
        report.add('format', 'put %s sent again without its idempotency key or with another '
                   'body' % first.f['key'], first, again)
    for key, outcomes in h.put_outcomes.items():
        ok = [e for e in outcomes if e.name == 'put.ok']
        if len({e.f['id'] for e in ok}) > 1:
            report.add('put-twice', 'retries of put %s with one idempotency key answered '
                       'different job ids' % key, *ok)
        for outcome in ok:
            id_ = outcome.f['id']
            if id_ in h.id_key and h.id_key[id_] != key:
                report.add('id-reused', 'job id %d returned for puts %s and %s'
                           % (id_, h.id_key[id_], key), outcome)
            h.id_key[id_] = key
    for id_, gots in h.gots.items():
        for g in gots:
            key = g.f['key']
            put = h.puts.get(key)
            if put is None:
                report.add('phantom', 'job %d delivered with key %s that no put sent'
                           % (id_, key), g)
                continue
            ids_of_key[key].add(id_)
            outcome = h.put_outcome.get(key)
            if outcome is not None and outcome.name == 'put.fail':
                report.add('failed-put', 'job %d delivered, but its put was refused' % id_,
                           outcome, g)
            if g.f['hash'] != put.f['hash'] or g.f['len'] != put.f['len']:
                report.add('altered', 'job %d delivered a body that differs from its put'
                           % id_, put, g)
            if id_ in h.id_key and h.id_key[id_] != key:
                report.add('wrong-payload', 'job %d was put as %s but delivered the body of %s'
                           % (id_, h.id_key[id_], key), g)
    for key, ids in ids_of_key.items():
        if len(ids) > 1:
            report.add('put-twice', 'put %s delivered as jobs %s' % (key, sorted(ids)),
                       h.puts[key])


def check_lost(h, report):
    drained = any(d.name == 'drain.done' for d in h.drains)
    for id_, key in h.id_key.items():
        if not h.gots.get(id_):
            report.add('lost', 'job %d (%s) acknowledged by its put, never delivered'
                       % (id_, key), h.put_outcome[key])
    if not drained:
        return
    empty_ns = min(d.t for d in h.drains if d.name == 'drain.done')
    for id_, gots in h.gots.items():
        for g in gots:
            put = h.puts.get(g.f['key'])
            if g.f['inv'] > empty_ns and (put is None or put.t < empty_ns):
                report.add('resurrected', 'job %d delivered after the drain found the queue '
                           'empty' % id_, g)
    maybe_acked = {e.f['id'] for e in h.events if e.name == 'ack.unknown'}
    for id_, gots in h.gots.items():
        if not h.acks_ok.get(id_) and id_ not in maybe_acked:
            report.add('vanished', 'job %d delivered (%d times), no ack of it got OK or was '
                       'lost in a crash, and the drain found the queue empty'
                       % (id_, len(gots)), gots[-1])


def lease_end_ns(h, g):
    """The earliest time by which the lease of delivery g had surely ended, or None."""
    ends = []
    id_, lease = g.f['id'], g.f['lease']
    ttr_ms = h.puts[g.f['key']].f['ttr'] if g.f['key'] in h.puts else None
    extended = g.f['inv']
    evs = h.lease_events.get((id_, lease), [])
    for e in evs:
        if e.name == 'touch.ok':
            extended = max(extended, invocation_before(evs, 'touch.inv', e).t)
        # A release the server may have applied ends the lease when it arrives, even if its
        # answer was lost; only a definite refusal proves it did not.
        if e.name == 'release.inv' and first_outcome(evs, 'release', e) != 'release.fail':
            ends.append(e.t)
    if ttr_ms is not None:
        ends.append(extended + (ttr_ms - h.lease_slack_ms) * 1000000)
    # Its holder closed or lost the connection after the delivery.
    ends.extend(t for t in h.closes.get(g.worker, []) if t >= g.t)
    return min(ends) if ends else None


def invocation_before(evs, name, outcome):
    inv = [e for e in evs if e.name == name and e.t <= outcome.t]
    return inv[-1] if inv else outcome


def first_outcome(evs, op, inv):
    """The name of the first outcome of op recorded after its invocation inv, or None."""
    for e in evs:
        if e.t >= inv.t and e.name in (op + '.ok', op + '.fail', op + '.unknown'):
            return e.name
    return None


def ttr_of(h, g):
    put = h.puts.get(g.f['key'])
    return put.f['ttr'] if put is not None else '?'


def kill_window_end(h, k):
    """The last moment spoold killed at k may still have served: the driver logs the kill
    before sending SIGKILL and logs the next start after it, so the old process died somewhere
    in between (a reply can arrive after the kill line)."""
    later = [t for t in h.starts if t > k.t]
    return min(later) if later else float('inf')


def kill_between(h, start_ns, end_ns):
    """True if a kill may have taken effect between start_ns and end_ns."""
    return any(k.t <= end_ns and kill_window_end(h, k) >= start_ns for k in h.kills)


def explained(h, d1, d2):
    """True if d1's lease may have ended before d2 was handed out."""
    end = lease_end_ns(h, d1)
    if end is not None and end <= d2.t:
        return True
    return kill_between(h, d1.f['inv'], d2.t)


def check_redelivery(h, report):
    for id_, gots in h.gots.items():
        for i in range(1, len(gots)):
            d1, d2 = gots[i - 1], gots[i]
            # If d2's reserve was sent before d1 arrived, the server may have handed them out
            # in either order: accept the reverse order too.
            if (d2.f['attempt'] <= d1.f['attempt'] and d2.f['inv'] > d1.t
                    and not kill_between(h, d1.f['inv'], d2.t)):
                report.add('attempts', 'job %d delivered as attempt %d, then as attempt %d with '
                           'no restart between' % (id_, d1.f['attempt'], d2.f['attempt']), d1, d2)
            if not explained(h, d1, d2) and not (d2.f['inv'] <= d1.t and explained(h, d2, d1)):
                report.add('unexplained', 'job %d delivered again with no end of the previous '
                           'lease before it (%.3f ms after the previous reserve was sent; TTR '
                           '%s ms)' % (id_, (d2.t - d1.f['inv']) / 1e6, ttr_of(h, d1)), d1, d2)
        acks = h.acks_ok.get(id_, [])
        leases = {a.f['lease'] for a in acks}
        if len(leases) > 1:
            report.add('acked-twice', 'job %d acked OK under leases %s' % (id_, sorted(leases)),
                       *acks)
        for a in acks:
            mine = [g for g in gots if g.f['lease'] == a.f['lease']]
            for g in gots:
                if g.f['lease'] == a.f['lease']:
                    continue
                if g.f['inv'] > a.t:
                    report.add('after-ack', 'job %d delivered again after an ack OK' % id_, a, g)
                elif mine and g.f['inv'] > mine[0].t and g.t < a.t:
                    report.add('stale-ack', 'job %d delivered to another lease after this one '
                               'and before its ack got OK: either the ack was accepted on an '
                               'ended lease or the job was delivered after the ack' % id_,
                               mine[0], g, a)


def check_drains(h, report):
    for d in h.drains:
        if d.name == 'drain.incomplete':
            report.add('drain', 'drain %s left jobs in the queue' % d.worker, d)
        elif d.f['dead'] != 0:
            report.add('drain', '%d jobs went dead (nothing buries them)' % d.f['dead'], d)
    if not h.drains:
        report.add('drain', 'no drain ran: "lost" and "vanished" cannot be judged')


def summary(h):
    outcomes = defaultdict(int)
    for e in h.put_outcome.values():
        outcomes[e.name] += 1
    deliveries = sum(len(g) for g in h.gots.values())
    redelivered = sum(1 for g in h.gots.values() if len(g) > 1)
    return ('kills=%d puts: ok=%d unknown=%d refused=%d; deliveries=%d of %d jobs '
            '(%d delivered more than once); acked=%d'
            % (len(h.kills), outcomes['put.ok'], outcomes['put.unknown'], outcomes['put.fail'],
               deliveries, len(h.gots), redelivered, len(h.acks_ok)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--min-kills', type=int, default=0)
    p.add_argument('--min-puts', type=int, default=0)
    p.add_argument('--lease-slack-ms', type=float, default=0,
                   help='accept a lease ending this much before its TTR (diagnosis only: '
                        'the contract, and the test, allow 0)')
    p.add_argument('directory')
    args = p.parse_args()
    report = Report()
    h = History(load(args.directory, report))
    h.lease_slack_ms = args.lease_slack_ms
    check_payloads(h, report)
    check_lost(h, report)
    check_redelivery(h, report)
    check_drains(h, report)
    put_ok = sum(1 for e in h.put_outcome.values() if e.name == 'put.ok')
    if len(h.kills) < args.min_kills or put_ok < args.min_puts:
        report.add('too-little', 'the run had %d kills and %d acknowledged puts (want %d and %d)'
                   % (len(h.kills), put_ok, args.min_kills, args.min_puts))
    print(summary(h))
    if not report.violations:
        print('OK: no violation')
        return 0
    counts = defaultdict(int)
    for rule, _, _ in report.violations:
        counts[rule] += 1
    print('FAIL: %d violations (%s)' % (len(report.violations),
          ', '.join('%s=%d' % kv for kv in sorted(counts.items()))))
    for rule, message, events in report.violations[:SHOWN_MAX]:
        print('%s: %s' % (rule, message))
        for e in events:
            print('    %s [%s] %s' % (e.where, e.worker, e.text))
    return 1


if __name__ == '__main__':
    sys.exit(main())
