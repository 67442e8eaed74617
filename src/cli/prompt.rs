//! The interactive prompt of `floodsql sql` (no file, no `-c`), in the manner
//! of datafusion-cli and the duckdb CLI: statements end with `;`, Ctrl-C
//! cancels the running query (or the line being typed) and keeps the
//! session, Ctrl-D or `\q` leaves. History is kept across runs, keywords,
//! functions and tables complete with Tab, and backslash commands inspect
//! the session (`\?` lists them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::execution::context::SessionContext;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Editor, Helper};

use crate::context::Cancel;
use crate::pipeline::{run_to_outputs, Outputs};
use crate::template::{bind_some, Param};

/// What the prompt needs from the command line.
pub(crate) struct PromptOptions {
    pub(crate) quiet: bool,
    pub(crate) on_cluster: bool,
    /// `--param` values, bound into every statement that uses them.
    pub(crate) params: BTreeMap<String, Param>,
}

/// A backslash command of the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Help,
    Quit,
    Describe,
    Functions,
    Timing,
    Out,
}

/// Every command, declared once: its names (Tab offers those starting with
/// a backslash), its arguments and what it does — the help, completion and
/// dispatch all read this table.
const COMMANDS: &[(Command, &[&str], &str, &str)] = &[
    (Command::Help, &["\\?", "help", "\\h"], "", "this help"),
    (
        Command::Quit,
        &["\\q", "quit", "exit"],
        "",
        "leave the prompt",
    ),
    (
        Command::Describe,
        &["\\d"],
        "",
        "list the table functions, tables and views",
    ),
    (
        Command::Describe,
        &["\\d"],
        "NAME",
        "describe a table function, table or view (its columns)",
    ),
    (
        Command::Functions,
        &["\\df"],
        "",
        "floodsql's functions, one line each",
    ),
    (
        Command::Functions,
        &["\\df"],
        "NAME",
        "a function's documentation: syntax, arguments, example",
    ),
    (
        Command::Timing,
        &["\\timing"],
        "",
        "print each statement's wall time (toggle)",
    ),
    (
        Command::Out,
        &["\\out"],
        "FILE...",
        "write the next query's result as raster outputs, by extension: \
         .tif (COG), .parquet, .png (as `sql --out`)",
    ),
];

/// Queries on the demo scene (`floodsql demo`) that `\\?` offers.
const STARTERS: &str = "\
  SELECT id, datetime FROM stac_items('floodsql-demo/catalog/items.json', 'GFM',
    '68.0127,26.7242,68.4127,27.0642', '2022-09') ORDER BY datetime LIMIT 5;

  SELECT datetime, sum(pixel_count(pixels, 1)) AS flooded_pixels
  FROM flood_chunks('floodsql-demo/catalog/items.json', 'GFM',
    '68.0127,26.7242,68.4127,27.0642', '2022-09', 'ensemble_flood_extent')
  GROUP BY datetime ORDER BY datetime;";

/// The command a line names, with its arguments.
fn parse_command(line: &str) -> Option<(Command, &str)> {
    let (name, args) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(c, a)| (c, a.trim()));
    COMMANDS
        .iter()
        .find(|(_, names, _, _)| names.contains(&name))
        .map(|(c, _, _, _)| (*c, args))
}

/// The prompt's help, from [`COMMANDS`].
fn help() -> String {
    let mut out = String::from(
        "statements end with ';' and may span lines; Ctrl-C cancels the running query\n\
         (or clears the line), Ctrl-D or \\q leaves.\n\n",
    );
    for (_, names, args, what) in COMMANDS {
        let head = format!("{} {args}", names.join("  "));
        out.push_str(&format!("  {:<18} {what}\n", head.trim_end()));
    }
    out.push_str(
        "\nTab completes keywords, functions and tables. SET floodsql.<option> = value\n\
         changes a session option (SHOW ALL lists them). History: ~/.floodsql_history\n\
         (FLOODSQL_HISTORY overrides).\n\nTo start, on the demo scene (`floodsql demo` \
         makes it in ./floodsql-demo):\n\n",
    );
    out.push_str(STARTERS);
    out
}

/// SQL words offered by Tab besides the session's functions and tables.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "HAVING",
    "LIMIT",
    "OFFSET",
    "AS",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IS",
    "IN",
    "BETWEEN",
    "LIKE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "JOIN",
    "LEFT",
    "RIGHT",
    "INNER",
    "OUTER",
    "ON",
    "USING",
    "UNION",
    "ALL",
    "DISTINCT",
    "WITH",
    "CREATE",
    "VIEW",
    "TABLE",
    "EXTERNAL",
    "DROP",
    "INSERT",
    "INTO",
    "VALUES",
    "COPY",
    "TO",
    "STORED",
    "LOCATION",
    "EXPLAIN",
    "ANALYZE",
    "DESCRIBE",
    "SHOW",
    "SET",
    "TABLES",
    "FUNCTIONS",
    "ASC",
    "DESC",
    "CAST",
    "COUNT",
    "SUM",
    "MIN",
    "MAX",
    "AVG",
];

/// Tab completion over keywords, backslash commands and the session's
/// functions and tables (read when Tab is pressed, so new views complete).
struct SqlHelper {
    ctx: SessionContext,
}

impl SqlHelper {
    fn words(&self) -> Vec<String> {
        let state = self.ctx.state();
        let mut w: Vec<String> = KEYWORDS.iter().map(|k| k.to_string()).collect();
        w.extend(state.scalar_functions().keys().cloned());
        w.extend(state.aggregate_functions().keys().cloned());
        w.extend(state.window_functions().keys().cloned());
        w.extend(state.table_functions().keys().cloned());
        for c in self.ctx.catalog_names() {
            if let Some(cat) = self.ctx.catalog(&c) {
                for s in cat.schema_names() {
                    if let Some(schema) = cat.schema(&s) {
                        w.extend(schema.table_names());
                    }
                }
            }
        }
        w.sort();
        w.dedup();
        w
    }
}

impl Completer for SqlHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\\'))
            .map_or(0, |i| i + 1);
        let word = &head[start..];
        if word.is_empty() {
            return Ok((pos, Vec::new()));
        }
        let pool: Vec<String> = if word.starts_with('\\') {
            let mut names: Vec<String> = COMMANDS
                .iter()
                .flat_map(|(_, names, _, _)| names.iter())
                .filter(|n| n.starts_with('\\'))
                .map(|n| n.to_string())
                .collect();
            names.dedup();
            names
        } else {
            self.words()
        };
        let lower = word.to_lowercase();
        let upper_typed = word.chars().any(char::is_uppercase);
        let found = pool
            .into_iter()
            .filter(|w| w.to_lowercase().starts_with(&lower))
            .map(|w| {
                // keywords follow the case the user types
                let shown = if KEYWORDS.contains(&w.as_str()) && !upper_typed {
                    w.to_lowercase()
                } else {
                    w
                };
                Pair {
                    display: shown.clone(),
                    replacement: shown,
                }
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for SqlHelper {
    type Hint = String;
}
impl Highlighter for SqlHelper {}
impl Validator for SqlHelper {}
impl Helper for SqlHelper {}

/// Where the history lives: `FLOODSQL_HISTORY`, else `~/.floodsql_history`.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("FLOODSQL_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".floodsql_history")))
}

/// State the backslash commands change.
#[derive(Default)]
struct Session {
    timing: bool,
    /// Raster outputs for the next query (`\out`).
    next_outputs: Option<Outputs>,
}

/// `\out FILE...`: outputs by extension.
fn parse_outputs(args: &str) -> anyhow::Result<Option<Outputs>> {
    let mut o = Outputs::default();
    for f in args.split_whitespace() {
        let p = PathBuf::from(f);
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let slot = match ext.as_deref() {
            Some("tif" | "tiff") => &mut o.tif,
            Some("parquet") => &mut o.parquet,
            Some("png") => &mut o.png,
            _ => anyhow::bail!("\\out: '{f}' is not a .tif, .parquet or .png file"),
        };
        if slot.replace(p).is_some() {
            anyhow::bail!("\\out: two files of the kind of '{f}'");
        }
    }
    Ok(o.any().then_some(o))
}

/// A table of strings, printed like query results.
fn print_table(headers: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let fields: Vec<Field> = headers
        .iter()
        .map(|h| Field::new(*h, DataType::Utf8, false))
        .collect();
    let cols = (0..headers.len())
        .map(|i| {
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i])))
                as arrow::array::ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&[batch])?);
    Ok(())
}

/// Runs the prompt until `\q` or Ctrl-D.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    o: PromptOptions,
) -> anyhow::Result<()> {
    let mut rl: Editor<SqlHelper, FileHistory> = Editor::new()?;
    rl.set_helper(Some(SqlHelper { ctx: ctx.clone() }));
    let history = history_path();
    if let Some(h) = &history {
        let _ = rl.load_history(h);
    }
    if !o.quiet {
        eprintln!(
            "floodsql {} — SQL over flood data{}. \\? for help, \\df for floodsql's functions, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            if o.on_cluster { " (on a cluster)" } else { "" }
        );
    }
    let mut session = Session::default();
    let mut buf = String::new();
    loop {
        let prompt = if buf.is_empty() {
            "floodsql> "
        } else {
            "      ...> "
        };
        let line = match rl.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buf.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buf.is_empty() && trimmed.is_empty() {
            continue; // an empty line is nothing, not the start of a statement
        }
        // backslash commands are recognised at any point (psql's rule); an
        // unfinished statement is dropped, and said so, rather than taking
        // the command as SQL text
        if !buf.is_empty() && trimmed.starts_with('\\') {
            eprintln!(
                "(the unfinished statement of {} line(s) was dropped)",
                buf.lines().count()
            );
            buf.clear();
        }
        if buf.is_empty() && is_command(trimmed) {
            let _ = rl.add_history_entry(trimmed);
            save(&mut rl, &history);
            match command(rt, ctx, &o, &mut session, trimmed) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    eprintln!("error: {}", super::report(&e));
                    continue;
                }
            }
        }
        buf.push_str(&line);
        buf.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let _ = rl.add_history_entry(buf.trim());
        save(&mut rl, &history);
        let text = std::mem::take(&mut buf);
        let t0 = Instant::now();
        if let Err(e) = statement(rt, ctx, &o, &mut session, &text) {
            eprintln!("error: {}", super::report(&e));
        }
        if session.timing {
            eprintln!("Elapsed {:.3} s", t0.elapsed().as_secs_f64());
        }
    }
    Ok(())
}

fn save(rl: &mut Editor<SqlHelper, FileHistory>, history: &Option<PathBuf>) {
    if let Some(h) = history {
        let _ = rl.append_history(h);
    }
}

fn is_command(line: &str) -> bool {
    line.starts_with('\\') || parse_command(line).is_some()
}

/// Runs one backslash command; `Ok(false)` leaves the prompt.
fn command(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    o: &PromptOptions,
    session: &mut Session,
    line: &str,
) -> anyhow::Result<bool> {
    let Some((cmd, args)) = parse_command(line) else {
        let name = line.split_whitespace().next().unwrap_or(line);
        let near = COMMANDS
            .iter()
            .flat_map(|(_, names, _, _)| names.iter())
            .filter(|n| n.starts_with('\\'))
            .map(|n| (crate::error::edit_distance(n, name), *n))
            .min()
            .filter(|(d, _)| *d <= 2);
        match near {
            Some((_, n)) => {
                anyhow::bail!("unknown command {name}: did you mean {n}? (\\? lists the commands)")
            }
            None => anyhow::bail!("unknown command {name}: \\? lists the commands"),
        }
    };
    match cmd {
        Command::Quit => return Ok(false),
        Command::Help => println!("{}", help()),
        Command::Timing => {
            session.timing = !session.timing;
            println!("Timing is {}.", if session.timing { "on" } else { "off" });
        }
        Command::Functions if args.is_empty() => {
            // one line each, fitted to the terminal: kind, name, summary
            let docs = crate::functions::documented();
            let room = term_width().saturating_sub(34).max(30);
            print_table(
                &["kind", "name", "what it gives"],
                docs.into_iter()
                    .map(|f| vec![f.kind.to_string(), f.name.clone(), clip(f.summary(), room)])
                    .collect(),
            )?;
            println!("\\df NAME shows a function's syntax, arguments and example.");
        }
        Command::Functions => println!("{}", function_doc(args)?),
        Command::Describe if args.is_empty() => {
            let room = term_width().saturating_sub(30).max(30);
            print_table(
                &["table function", "columns"],
                crate::functions::documented()
                    .into_iter()
                    .filter(|f| f.kind == "table")
                    .map(|f| {
                        let cols: Vec<&str> = f.columns.iter().map(|(n, _)| n.as_str()).collect();
                        vec![f.name.clone(), clip(&cols.join(", "), room)]
                    })
                    .collect(),
            )?;
            statement(
                rt,
                ctx,
                o,
                session,
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_schema <> 'information_schema' ORDER BY table_schema, table_name;",
            )?
        }
        Command::Describe
            if crate::functions::documented()
                .iter()
                .any(|f| f.kind == "table" && f.name == args) =>
        {
            println!("{}", function_doc(args)?)
        }
        Command::Describe => {
            if !args
                .chars()
                .all(|c| c.is_alphanumeric() || "_.\"".contains(c))
            {
                anyhow::bail!("\\d: '{args}' is not a table name");
            }
            statement(rt, ctx, o, session, &format!("DESCRIBE {args};"))?
        }
        Command::Out => {
            session.next_outputs = parse_outputs(args)?;
            match &session.next_outputs {
                Some(out) => println!(
                    "the next query's result goes to {}",
                    out.paths()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => println!("\\out cleared: results are printed"),
            }
        }
    }
    Ok(true)
}

/// The terminal's width in columns (stdout's), else `$COLUMNS`, else 100.
fn term_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct we own; fd 1 may not be a
    // terminal, in which case the call fails and leaves it zeroed
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        return ws.ws_col as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
}

/// `text` cut to `room` characters, with an ellipsis when cut.
fn clip(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_string();
    }
    let mut t: String = text.chars().take(room.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// A function's whole documentation (`\\df NAME`, `\\d TABLE_FUNCTION`).
fn function_doc(name: &str) -> anyhow::Result<String> {
    let docs = crate::functions::documented();
    let Some(f) = docs
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name.trim()))
    else {
        let near = docs
            .iter()
            .map(|f| (crate::error::edit_distance(&f.name, name), f.name.as_str()))
            .min()
            .filter(|(d, _)| *d <= 3)
            .map_or(String::new(), |(_, n)| format!(": did you mean {n}?"));
        anyhow::bail!("no floodsql function '{name}'{near} (\\df lists them)");
    };
    let mut out = format!("{} ({} function)\n\n  {}\n\n", f.name, f.kind, f.syntax);
    out.push_str(&wrap(&f.description, term_width().min(100), "  "));
    if !f.arguments.is_empty() {
        out.push_str("\n\narguments:\n");
        let w = f.arguments.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
        for (a, what) in &f.arguments {
            out.push_str(&format!("  {a:<w$}  {what}\n"));
        }
    }
    if !f.columns.is_empty() {
        out.push_str("\ncolumns:\n");
        for (c, t) in &f.columns {
            out.push_str(&format!("  {c:<16} {t}\n"));
        }
    }
    if let Some(e) = &f.example {
        out.push_str(&format!("\nexample:\n{}\n", e.trim_end()));
    }
    Ok(out.trim_end().to_string())
}

/// `text` wrapped at `width` columns, each line indented.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::from(indent);
    for word in text.split_whitespace() {
        if line.len() > indent.len() && line.len() + 1 + word.len() > width {
            out.push_str(line.trim_end());
            out.push('\n');
            line = String::from(indent);
        }
        if line.len() > indent.len() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(line.trim_end());
    out
}

/// Runs statement text (Ctrl-C cancels it and keeps the prompt): printed,
/// or rasterised when `\out` named outputs for it.
fn statement(
    rt: &tokio::runtime::Runtime,
    ctx: &SessionContext,
    o: &PromptOptions,
    session: &mut Session,
    text: &str,
) -> anyhow::Result<()> {
    let (sql, _) = bind_some(text, &o.params)?;
    let cancel = Cancel::default();
    let outputs = session.next_outputs.take();
    rt.block_on(super::until_signal(&cancel, async {
        match outputs {
            Some(outputs) => {
                let progress = super::query_progress(o.quiet, o.on_cluster, &cancel);
                let run = crate::pipeline::RunLabel {
                    parameters: crate::template::Param::pairs(&o.params),
                    ..crate::pipeline::RunLabel::titled("floodsql result")
                };
                let s = run_to_outputs(ctx, &sql, &outputs, &run, &progress).await;
                progress.search.finish_and_clear();
                super::print_written(&outputs, &s?);
                Ok(())
            }
            None => {
                super::sql::run_text(
                    ctx,
                    &sql,
                    o.quiet,
                    o.on_cluster,
                    &cancel,
                    super::sql::Format::Table,
                )
                .await
            }
        }
    }))
}
