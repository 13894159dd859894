fn main() {
    eprintln!("crak-restore: not implemented yet");
    std::process::exit(2);
}
