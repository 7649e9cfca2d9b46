#!/usr/bin/env python3
"""Turn the dashboard page into a C header: a string literal of its bytes (octal escapes for
anything outside printable ASCII), so spoold serves it from memory. Usage: IN.html OUT.h"""
import sys

data = open(sys.argv[1], "rb").read()
out = ['/* Generated from dashboard.html by embed_html.py: do not edit. */\n',
       'static const char dashboard_html[] =\n']
for start in range(0, len(data), 64):
    chunk = data[start:start + 64]
    text = ''.join(chr(b) if 32 <= b < 127 and b not in (34, 92, 63) else '\\%03o' % b
                   for b in chunk)
    out.append('    "%s"\n' % text)
out.append(';\n')
open(sys.argv[2], "w").write(''.join(out))
