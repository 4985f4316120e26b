"""Op rules: one small pure function per op, registered with its traits."""
