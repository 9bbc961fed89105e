"""The `flowscope` command and its terminal viewer."""
