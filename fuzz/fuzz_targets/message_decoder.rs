//! Message decoding on arbitrary frames (input: identifier u32 LE, flags u8,
//! data): never panics, and a decoded message encodes back to the same
//! message from the same sender.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{Frame, Message};

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_at_checked(5) else {
        return;
    };
    let id = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let Ok(frame) = Frame::new(id, head[4], body) else {
        return;
    };
    let Ok((src, msg)) = Message::decode(&frame) else {
        return;
    };
    let again = msg.to_frame(src).expect("a decoded message encodes");
    let (src2, msg2) = Message::decode(&again).expect("an encoded message decodes");
    assert_eq!((src2, msg2), (src, msg));
});
