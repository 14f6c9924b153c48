//! Links every app with a script generated from `board::memory`.

fn main() {
    board::linker::emit(board::linker::Program::App);
}
