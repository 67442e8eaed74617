fn main() -> std::process::ExitCode {
    floodsql::cli::main()
}
