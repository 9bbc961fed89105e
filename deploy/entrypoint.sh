#!/bin/sh
# The image's entry point: `flowscope ARGS...`, after giving bcc kernel headers when it runs the agent.
#
# bcc compiles the datapath against /lib/modules/$(uname -r)/build, and `uname -r` is the node's kernel, which
# the image cannot know when it is built. The image carries Debian's packaged headers instead (linux-headers-*)
# and links them there, as scripts/setup does on a machine whose own kernel has none packaged: they serve for
# the UAPI structs, while kernel-internal offsets come from the node's BTF at run time. A node's own headers,
# mounted at /lib/modules/$(uname -r)/build, are used as they are.
set -eu

if [ "${1:-}" = agent ]; then
  kdir=/lib/modules/$(uname -r)
  if [ ! -e "$kdir/build/include/linux/kconfig.h" ] && [ ! -e "$kdir/build/include/generated/autoconf.h" ]; then
    build=$(ls -d /usr/src/linux-headers-*-"$(dpkg --print-architecture)" 2>/dev/null | sort -V | tail -n 1)
    source=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$build" ] || [ -z "$source" ]; then
      echo "flowscope-entrypoint: no kernel headers in the image under /usr/src" >&2
      exit 1
    fi
    mkdir -p "$kdir"
    ln -sfn "$build" "$kdir/build"
    ln -sfn "$source" "$kdir/source"
  fi
fi
exec /opt/flowscope/bin/flowscope "$@"
