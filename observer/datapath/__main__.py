"""`python -m flowscope.observer.datapath`: the programs on the tcx hooks of every device of this network
namespace, one line each (Debian 12's bpftool does not show tcx). An agent attaches inside its node's namespace,
so run it there: `ip netns exec fs-lab-node1 .venv/bin/python -m flowscope.observer.datapath`.

A package's __main__ rather than `-m ...datapath.tc`: the package imports tc, and running a module its package
has already imported makes runpy warn.
"""

import sys

from flowscope.observer.datapath.tc import main

sys.exit(main())
