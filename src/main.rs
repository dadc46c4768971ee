//! The `incident-console` binary.

use clap::Parser;
use clap::error::ErrorKind;

use incident_console::cli::args::Cli;
use incident_console::core::error::{EXIT_BAD_INPUT, EXIT_CHECK_FAILED, Result};
use incident_console::store::connect::check_operator;
use incident_console::{cli, console};

fn main() {
    incident_console::console::startup::launched();
    // Panics get a readable report (and, once the TUI exists, a restored terminal first).
    let _ = color_eyre::install();
    // `incident-console … | head` closes stdout early: stop quietly, as other tools do,
    // instead of printing a crash report.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let text = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied());
        if text.is_some_and(|t| t.starts_with("failed printing to stdout") && t.contains("Broken pipe")) {
            std::process::exit(141);
        }
        report(info);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Bad arguments with --json: machines get their JSON on stdout too.
            let is_usage = !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
            if is_usage && std::env::args_os().any(|a| a == "--json") {
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("").trim_start_matches("error: ");
                println!("{}", serde_json::json!({ "error": first, "exit_code": EXIT_BAD_INPUT }));
            }
            e.exit()
        }
    };
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(EXIT_CHECK_FAILED);
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if json {
                let body = serde_json::json!({ "error": e.to_string(), "exit_code": e.exit_code() });
                println!("{body}");
            }
            // Errors quote file names and arguments: shown, never executed by the terminal.
            eprintln!("error: {}", incident_console::core::sanitize::multiline(&e.to_string()));
            e.exit_code()
        }
    };
    // Do not wait for background tasks (a pending stdin read) to finish.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}

/// The console when no command is given, else the headless command.
async fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    let session = g.session();
    // Before anything: the name goes on every audit row and journal entry.
    check_operator(&session.operator)?;
    match cli.command {
        None => {
            let database_url = g.database_url().map(str::to_string);
            let no_journal = cli.no_journal;
            let replica = console::Replica {
                url: g.replica_url().map(|u| incident_console::store::connect::SecretUrl(u.to_string())),
                max_lag: g.replica_max_lag,
            };
            let o = console::Options { database_url, session, title: cli.title, level: cli.level, no_journal, replica };
            console::run(o).await
        }
        Some(command) => cli::run(command, g).await,
    }
}
