//! `docs/cli.md`, generated from the command tree clap parses, and the test that keeps the
//! file equal to it: a subcommand or flag added in code and not in the doc fails the build.
//! `BORDERGATE_BLESS=1 cargo test --lib cli::reference` rewrites the file.

use std::fmt::Write;

use clap::CommandFactory;

/// The part of `docs/cli.md` written by hand, above the generated reference.
const HEAD: &str = "# Command line reference

Every subcommand and flag of `bordergate`, generated from the command definitions (the test
`cli::reference` fails when this file and the code disagree; `BORDERGATE_BLESS=1 cargo test
--lib cli::reference` regenerates it). `bordergate <command> --help` prints the same text.

## Exit codes

Every command uses the same three:

| code | meaning | examples |
|---|---|---|
| `0` | done, and what was checked is fine | `check` found no problem; `audit verify` found the log intact (recorded repairs are notes, not damage); `audit repair` repaired, or found nothing to repair; `policy test` passed |
| `1` | the command ran and found problems | `check`: the files have errors; `audit verify`/`audit report`: the log is damaged; `policy test`: a case failed or a rule is uncovered |
| `2` | the command could not run | a bad flag or argument, a missing or unreadable file (`audit verify missing.log`, `check --config missing.yaml`), a log locked by a running gateway (`audit repair`), a gateway that cannot start (a port in use, a damaged audit log) |

Without `--config`, commands use the quickstart (`examples/quickstart/gateway.yaml`) from the
current directory, else from the checkout the binary was built in.

## Environment

| variable | meaning |
|---|---|
| `BORDERGATE_LOG` | the service log's filter (a tracing `EnvFilter`, default `info,rustls=error`: rustls' per-connection warnings, such as a client sending an IP address as SNI, are not logged) |
| `BORDERGATE_LOG_FORMAT` | `json` for JSON lines; anything else: text |
| `NO_COLOR` | set: no ANSI colour in the log (colour is used only when stderr is a terminal) |
| `BORDERGATE_AUDIT_POSTGRES` | the PostgreSQL store's connection string for the `audit` commands' `--postgres` |
";

fn flag(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_uppercase());
    let takes = a.get_action().takes_values();
    match (a.get_long(), a.get_short()) {
        (Some(l), s) => {
            let short = s.map(|s| format!("-{s}, ")).unwrap_or_default();
            if takes {
                format!("`{short}--{l} <{value}>`")
            } else {
                format!("`{short}--{l}`")
            }
        }
        (None, _) => format!("`<{value}>`"),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn command(out: &mut String, path: &str, c: &clap::Command) {
    let subs: Vec<&clap::Command> = c
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    let args: Vec<&clap::Arg> = c
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    let _ = writeln!(out, "\n## `{path}`\n");
    if let Some(about) = c.get_long_about().or(c.get_about()) {
        let _ = writeln!(out, "{}\n", about.to_string().trim());
    }
    if !args.is_empty() {
        let _ = writeln!(out, "| argument | default | meaning |\n|---|---|---|");
        for a in args {
            let mut default: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|v| format!("`{}`", v.to_string_lossy()))
                .collect();
            if let Some(env) = a.get_env() {
                default.push(format!("env `{}`", env.to_string_lossy()));
            }
            let help = a
                .get_long_help()
                .or(a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                flag(a),
                default.join(", "),
                cell(help.trim())
            );
        }
    }
    for s in subs {
        command(out, &format!("{path} {}", s.get_name()), s);
    }
}

/// The whole of `docs/cli.md`.
pub(super) fn markdown() -> String {
    let mut out = HEAD.to_owned();
    let cmd = super::Cli::command();
    command(&mut out, "bordergate", &cmd);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn docs_cli_md_is_the_command_tree() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md");
        let want = super::markdown();
        if std::env::var_os("BORDERGATE_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/cli.md does not match the commands; regenerate it with `BORDERGATE_BLESS=1 cargo test --lib cli::reference`"
        );
    }
}
