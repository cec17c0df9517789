//! The `bordergate` command line: one file per subcommand.
