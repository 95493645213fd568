fn main() {
    println!("roadgate: not wired yet");
}
