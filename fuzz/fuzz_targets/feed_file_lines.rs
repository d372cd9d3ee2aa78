//! The proxy feed file, read in pieces: bytes nginx (or anyone who could write that file)
//! appended, cut into lines and parsed. Every line is whole, newline-free and within the
//! size limit; nothing panics.
#![no_main]

use filter_user::sensor::{proxy, proxy_file::LineSplitter, proxy_format::MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1) * 64;
    let mut splitter = LineSplitter::default();
    let (mut buf, mut lines) = (Vec::new(), Vec::new());
    for chunk in data.chunks(piece) {
        splitter.start(&mut buf);
        buf.extend_from_slice(chunk);
        let _ = splitter.finish(&buf, &mut lines);
        for &(start, len) in &lines {
            let line = &buf[start..start + len];
            assert!(!line.is_empty() && len <= MAX_DATAGRAM && !line.contains(&b'\n'));
            let _ = proxy::parse(line);
        }
    }
});
