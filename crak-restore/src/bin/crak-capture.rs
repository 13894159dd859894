fn main() {
    eprintln!("crak-capture: not implemented yet");
    std::process::exit(2);
}
