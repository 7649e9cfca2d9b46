#!/usr/bin/env python3
"""The history checker, checked: a hand-made clean history must pass, and each variant with
one anomaly must fail with the rule that names it.

The clean history (times in ms below, written out in ns; TTR 400 ms) has a kill, a put batch,
a refused put, a put lost in the crash (unknown outcome, then drained), and one second delivery
of each allowed kind: after a release, after the TTR ran out (with a late ack refused), after a
disconnect while holding the job, and after a kill of spoold (the holder learns of it only
later). Each anomaly is a small edit of it; a few other edits must still pass (an ack lost in a
crash counts as maybe applied).

Usage: test_check_history.py CHECK_HISTORY_PY
"""
import contextlib
import importlib.util
import io
import os
import re
import sys
import tempfile

CLEAN = {
    'driver': """
0 start pid=1 addr=a
5000 kill n=1 pid=1
5050 start pid=2 addr=b
9000 phase name=drain1
""",
    'producer0': """
10 connect.ok addr=a
11 put.inv key=p0.0 hash=00000000000000a0 len=100 ttr=400
12 put.ok key=p0.0 id=1
13 put.inv key=p0.1 hash=00000000000000a1 len=101 ttr=400 batch=b1
13 put.inv key=p0.2 hash=00000000000000a2 len=102 ttr=400 batch=b1
14 put.ok key=p0.1 id=2
14 put.ok key=p0.2 id=3
15 put.inv key=p0.3 hash=00000000000000a3 len=103 ttr=400
16 put.ok key=p0.3 id=4
17 put.inv key=p0.4 hash=00000000000000a4 len=104 ttr=400
18 put.ok key=p0.4 id=5
19 put.inv key=p0.5 hash=00000000000000a5 len=105 ttr=400
20 put.fail key=p0.5 err=QUEUE_FULL
4990 put.inv key=p0.6 hash=00000000000000a6 len=106 ttr=400
5001 put.unknown key=p0.6 err=CONNECTION_CLOSED
5001 connlost err=CONNECTION_CLOSED
5100 connect.ok addr=b
""",
    'consumer0': """
20 connect.ok addr=a
25 reserve.inv n=1
30 reserve.ok count=1
30 got id=1 lease=10 attempt=1 key=p0.0 hash=00000000000000a0 len=100 inv=25
31 ack.inv id=1 lease=10
32 ack.ok id=1 lease=10
35 reserve.inv n=1
40 reserve.ok count=1
40 got id=2 lease=11 attempt=1 key=p0.1 hash=00000000000000a1 len=101 inv=35
41 release.inv id=2 lease=11 kind=release
42 release.ok id=2 lease=11 kind=release
55 reserve.inv n=1
60 reserve.ok count=1
60 got id=2 lease=12 attempt=2 key=p0.1 hash=00000000000000a1 len=101 inv=55
61 ack.inv id=2 lease=12
62 ack.ok id=2 lease=12
65 reserve.inv n=1
70 reserve.ok count=1
70 got id=3 lease=13 attempt=1 key=p0.2 hash=00000000000000a2 len=102 inv=65
70 expire id=3 lease=13
569 ack.inv id=3 lease=13
570 ack.fail id=3 lease=13 err=LEASE_EXPIRED
610 reserve.inv n=1
620 reserve.ok count=1
620 got id=4 lease=16 attempt=2 key=p0.3 hash=00000000000000a3 len=103 inv=610
621 ack.inv id=4 lease=16
622 ack.ok id=4 lease=16
4890 reserve.inv n=1
4900 reserve.ok count=1
4900 got id=5 lease=17 attempt=1 key=p0.4 hash=00000000000000a4 len=104 inv=4890
5300 ack.inv id=5 lease=17
5301 ack.unknown id=5 lease=17 err=CONNECTION_CLOSED
5301 connlost err=CONNECTION_CLOSED
5400 connect.ok addr=b
""",
    'consumer1': """
20 connect.ok addr=a
480 reserve.inv n=1
500 reserve.ok count=1
500 got id=3 lease=14 attempt=2 key=p0.2 hash=00000000000000a2 len=102 inv=480
509 ack.inv id=3 lease=14
510 ack.ok id=3 lease=14
590 reserve.inv n=1
600 reserve.ok count=1
600 got id=4 lease=15 attempt=1 key=p0.3 hash=00000000000000a3 len=103 inv=590
601 disconnect ids=4
602 connect.ok addr=a
5001 connlost err=CONNECTION_CLOSED
5150 connect.ok addr=b
5160 reserve.inv n=2
5200 reserve.ok count=1
5200 got id=5 lease=18 attempt=1 key=p0.4 hash=00000000000000a4 len=104 inv=5160
5205 touch.inv id=5 lease=18
5206 touch.ok id=5 lease=18
5207 ack.inv id=5 lease=18
5208 ack.ok id=5 lease=18
""",
    'drain1': """
9010 connect.ok addr=b
9020 reserve.inv n=64
9030 reserve.ok count=1
9030 got id=6 lease=19 attempt=1 key=p0.6 hash=00000000000000a6 len=106 inv=9020
9031 ack.inv id=6 lease=19 batch=1
9032 ack.ok id=6 lease=19 batch=1
9040 reserve.inv n=64
9540 reserve.ok count=0
9541 drain.done ready=0 delayed=0 reserved=0 dead=0
""",
}


def sub(worker, old, new):
    """An edit: replace the line matching old (a regex, exactly once) by new (None: delete)."""
    def edit(files):
        lines = files[worker].strip('\n').split('\n')
        hits = [i for i, line in enumerate(lines) if re.search(old, line)]
        assert len(hits) == 1, '%s: %r matches %d lines' % (worker, old, len(hits))
        if new is None:
            del lines[hits[0]]
        else:
            lines[hits[0]] = new
        files[worker] = '\n'.join(lines) + '\n'
    return edit


def add(worker, text):
    def edit(files):
        files[worker] = files.get(worker, '') + text.strip('\n') + '\n'
    return edit


def drop(worker):
    def edit(files):
        del files[worker]
    return edit


# name -> (the rule the checker must report, edits, extra checker arguments)
ANOMALIES = {
    'lost acknowledged put': ('lost', [
        sub('consumer0', r'^30 got', None), sub('consumer0', r'^31 ack', None),
        sub('consumer0', r'^32 ack', None)], []),
    'delivered job never acked': ('vanished', [sub('consumer0', r'^32 ack.ok', None)], []),
    'redelivery after ack OK': ('after-ack', [add('drain1', """
9600 got id=1 lease=30 attempt=2 key=p0.0 hash=00000000000000a0 len=100 inv=9590
9601 ack.ok id=1 lease=30
""")], []),
    'delivery after the drain emptied the queue': ('resurrected', [add('drain1', """
9700 got id=6 lease=40 attempt=2 key=p0.6 hash=00000000000000a6 len=106 inv=9690
""")], []),
    'ack OK on a lease that had ended': ('stale-ack', [
        sub('consumer0', r'^570 ack.fail', '570 ack.ok id=3 lease=13'),
        sub('consumer1', r'^509 ack', None), sub('consumer1', r'^510 ack', None)], []),
    'acked under two leases': ('acked-twice', [
        sub('consumer0', r'^570 ack.fail', '570 ack.ok id=3 lease=13')], []),
    'altered payload': ('altered', [sub(
        'consumer1', r'^500 got',
        '500 got id=3 lease=14 attempt=2 key=p0.2 hash=00000000000000ff len=102 inv=480')], []),
    'truncated payload': ('altered', [sub(
        'consumer1', r'^500 got',
        '500 got id=3 lease=14 attempt=2 key=p0.2 hash=00000000000000a2 len=50 inv=480')], []),
    'body of another put': ('wrong-payload', [sub(
        'consumer0', r'^30 got',
        '30 got id=1 lease=10 attempt=1 key=p0.3 hash=00000000000000a3 len=103 inv=25')], []),
    'phantom job': ('phantom', [sub(
        'drain1', r'^9030 got',
        '9030 got id=6 lease=19 attempt=1 key=p7.7 hash=00000000000000a6 len=106 inv=9020')], []),
    'refused put delivered': ('failed-put', [sub(
        'drain1', r'^9030 got',
        '9030 got id=6 lease=19 attempt=1 key=p0.5 hash=00000000000000a5 len=105 inv=9020')], []),
    'job id reused': ('id-reused', [sub('producer0', r'^18 put.ok', '18 put.ok key=p0.4 id=4')],
                      []),
    'one put, two jobs': ('put-twice', [add('drain1', """
9035 got id=7 lease=20 attempt=1 key=p0.6 hash=00000000000000a6 len=106 inv=9020
9036 ack.ok id=7 lease=20 batch=1
""")], []),
    'idempotent retry made a second job': ('put-twice', [
        sub('producer0', r'^4990 put.inv', '4990 put.inv key=p0.6 hash=00000000000000a6 len=106 '
            'ttr=400 batch=b2 idem=1 retry=0'),
        add('producer0', """
5101 put.inv key=p0.6 hash=00000000000000a6 len=106 ttr=400 batch=b2 idem=1 retry=1
5102 put.ok key=p0.6 id=8
"""), add('drain1', """
9033 got id=8 lease=21 attempt=1 key=p0.6 hash=00000000000000a6 len=106 inv=9020
9034 ack.ok id=8 lease=21 batch=1
""")], []),
    'idempotent retries answered two ids': ('put-twice', [
        sub('producer0', r'^5001 put.unknown', '5001 put.ok key=p0.6 id=6'),
        add('producer0', """
5101 put.inv key=p0.6 hash=00000000000000a6 len=106 ttr=400 batch=b2 idem=1 retry=1
5102 put.ok key=p0.6 id=9
""")], []),
    'put sent twice without an idempotency key': ('format', [add('producer0', """
5101 put.inv key=p0.6 hash=00000000000000a6 len=106 ttr=400 batch=b2 retry=1
""")], []),
    'duplicate without a release': ('unexplained', [
        sub('consumer0', r'^41 release', None), sub('consumer0', r'^42 release', None)], []),
    'duplicate after a refused release': ('unexplained', [sub(
        'consumer0', r'^42 release',
        '42 release.fail id=2 lease=11 err=LEASE_EXPIRED kind=release')], []),
    'duplicate before the TTR ran out': ('unexplained', [sub(
        'consumer1', r'^500 got',
        '300 got id=3 lease=14 attempt=2 key=p0.2 hash=00000000000000a2 len=102 inv=290')], []),
    'duplicate before a touched lease ran out': ('unexplained', [add('consumer0', """
300 touch.inv id=3 lease=13
301 touch.ok id=3 lease=13
""")], []),
    'duplicate without the disconnect': ('unexplained', [sub('consumer1', r'^601 disc', None)],
                                         []),
    'duplicate without the kill': ('unexplained', [sub('driver', r'^5000 kill', None)], []),
    'attempt count going back': ('attempts', [sub(
        'consumer0', r'^60 got',
        '60 got id=2 lease=12 attempt=1 key=p0.1 hash=00000000000000a1 len=101 inv=55')], []),
    'drain incomplete': ('drain', [sub(
        'drain1', r'drain.done', '9541 drain.incomplete ready=3 delayed=0 reserved=0')], []),
    'jobs went dead': ('drain', [sub(
        'drain1', r'drain.done', '9541 drain.done ready=0 delayed=0 reserved=0 dead=2')], []),
    'no drain': ('drain', [drop('drain1')], []),
    'garbage line': ('format', [add('consumer1', '5300 got id=5 lease=')], []),
    'unknown event': ('format', [add('consumer1', '5300 teleport id=5')], []),
    'bad number': ('format', [add('consumer1', '5300 ack.ok id=five lease=1')], []),
    'missing header': ('format', [lambda files: files.update(
        {'consumer1': '# history v0 worker=consumer1\n' + files['consumer1'].strip('\n')})],
                       []),
    'too few kills': ('too-little', [], ['--min-kills', '2']),
    'too few puts': ('too-little', [], ['--min-puts', '100']),
}


# name -> edits of histories that must still pass
CLEAN_VARIANTS = {
    'ack lost in a crash, never redelivered': [
        sub('consumer1', r'^5160 reserve.inv', None), sub('consumer1', r'^5200 reserve', None),
        sub('consumer1', r'^5200 got', None), sub('consumer1', r'^5205 touch', None),
        sub('consumer1', r'^5206 touch', None), sub('consumer1', r'^5207 ack', None),
        sub('consumer1', r'^5208 ack', None)],
    # The server applies a release (and may hand the job out again) before the release is
    # durable; a crash then loses the release's answer, not its effect.
    'release answered by a crash, job delivered again before the kill': [
        sub('consumer0', r'^42 release',
            '4999 release.unknown id=2 lease=11 err=CONNECTION_CLOSED kind=release')],
    # A put with an idempotency key lost in a crash, retried: the server answers the id of
    # the job the first try made.
    'idempotent retry after a crash': [
        sub('producer0', r'^4990 put.inv', '4990 put.inv key=p0.6 hash=00000000000000a6 len=106 '
            'ttr=400 batch=b2 idem=1 retry=0'),
        add('producer0', """
5101 put.inv key=p0.6 hash=00000000000000a6 len=106 ttr=400 batch=b2 idem=1 retry=1
5102 put.ok key=p0.6 id=6 dup=1
""")],
    'history appended by a second run': [add('consumer1', '# crash-history v1 worker=consumer1')],
    # The driver logs a kill before sending SIGKILL and the next start after it: a reserve
    # sent and answered after the kill line may still come from the old process, so its job
    # may come again as the same attempt (the restart undid the lease).
    'delivery from the old process after the kill line': [
        sub('consumer0', r'^4890 reserve.inv', '5002 reserve.inv n=1'),
        sub('consumer0', r'^4900 reserve.ok', '5003 reserve.ok count=1'),
        sub('consumer0', r'^4900 got',
            '5003 got id=5 lease=17 attempt=1 key=p0.4 hash=00000000000000a4 len=104 inv=5002')],
}


def write(directory, files):
    for worker, text in files.items():
        text = text.strip('\n')
        # The header, unless an edit wrote its own (a wrong one).
        lines = [] if text.startswith('#') else ['# crash-history v1 worker=%s' % worker]
        for line in text.split('\n'):
            if line.startswith('#'):
                lines.append(line)
                continue
            t, rest = line.split(' ', 1)
            # ms -> ns, in the time column and in inv=
            rest = re.sub(r'\binv=(\d+)', lambda m: 'inv=%d' % (int(m.group(1)) * 1000000),
                          rest)
            lines.append('%d %s' % (int(t) * 1000000, rest))
        with open(os.path.join(directory, worker + '.hist'), 'w') as f:
            f.write('\n'.join(lines) + '\n')


def load_checker(path):
    spec = importlib.util.spec_from_file_location('check_history', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(checker, files, args):
    """The checker's exit code and output on files, run in this process (a new Python per
    case takes most of a second on a loaded machine)."""
    with tempfile.TemporaryDirectory(prefix='spool-check-history-') as d:
        write(d, files)
        out = io.StringIO()
        saved = sys.argv
        sys.argv = ['check_history.py'] + args + [d]
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                code = checker.main()
        except SystemExit as e:  # argparse
            code = e.code
        finally:
            sys.argv = saved
        return code, out.getvalue()


def main():
    checker = load_checker(sys.argv[1])
    failures = 0
    code, out = run(checker, dict(CLEAN), ['--min-kills', '1', '--min-puts', '5'])
    if code != 0 or 'OK: no violation' not in out:
        print('FAIL: the clean history was rejected (exit %d):\n%s' % (code, out))
        failures += 1
    else:
        print('ok: clean history passes: %s' % out.split('\n')[0])
    for name, edits in CLEAN_VARIANTS.items():
        files = dict(CLEAN)
        for edit in edits:
            edit(files)
        code, out = run(checker, files, ['--min-kills', '1', '--min-puts', '5'])
        if code != 0 or 'OK: no violation' not in out:
            print('FAIL: %s: rejected (exit %d):\n%s' % (name, code, out))
            failures += 1
        else:
            print('ok: %s passes' % name)
    for name, (rule, edits, args) in ANOMALIES.items():
        files = dict(CLEAN)
        for edit in edits:
            edit(files)
        code, out = run(checker, files, ['--min-kills', '1', '--min-puts', '5'] + args)
        found = re.search(r'^%s: ' % re.escape(rule), out, re.M) is not None
        if code != 1 or not found:
            print('FAIL: %s: want exit 1 with rule %s, got exit %d:\n%s' % (name, rule, code, out))
            failures += 1
        else:
            print('ok: %s -> %s' % (name, rule))
    print('%d of %d cases failed' % (failures, len(ANOMALIES) + len(CLEAN_VARIANTS) + 1))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
