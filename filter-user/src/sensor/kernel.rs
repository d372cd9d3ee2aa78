//! The kernel sensor: plaintext request starts that XDP sampled 1-in-N on verified
//! (established) connections, read from the pinned ring buffer and turned into
//! [`RequestEvent`]s.

use std::net::IpAddr;

use aya::maps::{Map, MapData, RingBuf};
use filter_common::{SAMPLE_FLAG_TLS_HELLO, SAMPLE_FLAG_V6, SAMPLE_PAYLOAD_MAX, Sample, maps};
use tokio::io::unix::AsyncFd;

use super::{
    RequestEvent, Sensor, Signal,
    http::{parse_request, requests_in},
};
use crate::{bpf::pins::Pins, target::canonical};

/// Samples handed over per drain, so that one busy ring cannot starve the rest of the loop.
pub(crate) const BATCH: usize = 4096;

/// A decoded sample.
#[derive(Clone, Copy, Debug)]
pub struct SampleRecord {
    /// Kernel timestamp (`CLOCK_MONOTONIC` ns).
    pub ktime_ns: u64,
    /// Client address.
    pub src: IpAddr,
    /// Request starts this sample stands for (the 1-in-N factor).
    pub weight: u32,
    /// Valid payload bytes.
    pub captured_len: usize,
    /// TCP payload length of the segment (≥ `captured_len`).
    pub payload_len: usize,
    /// The segment starts a TLS ClientHello (else an HTTP/1.x request start).
    pub tls_hello: bool,
    /// Payload prefix.
    pub payload: [u8; SAMPLE_PAYLOAD_MAX],
}

impl SampleRecord {
    /// Decodes raw ring-buffer bytes; `None` when too short to be a sample.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < size_of::<Sample>() {
            return None;
        }
        // SAFETY: the length was checked; `Sample` is a plain repr(C) struct valid for every bit
        // pattern, read unaligned from the ring-buffer bytes.
        let raw: Sample = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let src = if raw.flags & SAMPLE_FLAG_V6 != 0 {
            IpAddr::from(raw.saddr)
        } else {
            canonical(IpAddr::from(raw.saddr))
        };
        Some(Self {
            ktime_ns: raw.ktime_ns,
            src,
            weight: raw.sample_every.max(1),
            captured_len: usize::from(raw.captured_len).min(SAMPLE_PAYLOAD_MAX),
            payload_len: usize::from(raw.payload_len),
            tls_hello: raw.flags & SAMPLE_FLAG_TLS_HELLO != 0,
            payload: raw.payload,
        })
    }

    /// The captured payload.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload[..self.captured_len]
    }

    /// The event this sample is evidence of; `None` when the payload is not a parseable
    /// request start. `scratch` holds the parsed text the event borrows. A segment carrying
    /// several pipelined requests stands for all of them (see [`requests_in`]).
    #[must_use]
    pub fn event<'a>(
        &self,
        scratch: &'a mut [u8; SAMPLE_PAYLOAD_MAX + 2],
    ) -> Option<RequestEvent<'a>> {
        if self.tls_hello {
            return Some(RequestEvent {
                src: self.src,
                time_ns: self.ktime_ns,
                weight: self.weight,
                method: "",
                path: "",
                host: None,
                user_agent: None,
                sensor: Sensor::Kernel,
                signal: Signal::TlsHandshakes,
                status: None,
                upstream_secs: None,
                protocol: None,
            });
        }
        let requests = requests_in(self.payload(), self.payload_len);
        let request = parse_request(self.payload(), scratch)?;
        Some(RequestEvent {
            src: self.src,
            time_ns: self.ktime_ns,
            weight: self.weight.saturating_mul(requests),
            method: request.method,
            path: request.path,
            host: request.host,
            user_agent: request.user_agent,
            sensor: Sensor::Kernel,
            signal: Signal::Requests,
            status: None,
            upstream_secs: None,
            protocol: request.protocol,
        })
    }
}

/// Errors opening the ring buffer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KernelSensorError {
    /// The pinned ring buffer could not be opened.
    #[error("open ring buffer {path}: {source}")]
    Open {
        /// Its pin.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: aya::maps::MapError,
    },
    /// tokio could not watch it.
    #[error("register the ring buffer with tokio: {0}")]
    Register(#[source] std::io::Error),
}

/// The pinned ring buffer, watched by tokio.
pub(crate) struct KernelSensor {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl KernelSensor {
    /// Opens the pinned ring buffer.
    pub(crate) fn open(pins: &Pins) -> Result<Self, KernelSensorError> {
        let path = pins.map(maps::SAMPLES);
        let open_err = |source| KernelSensorError::Open {
            path: path.clone(),
            source,
        };
        let data = MapData::from_pin(&path).map_err(open_err)?;
        let ring =
            RingBuf::try_from(Map::from_map_data(data).map_err(open_err)?).map_err(open_err)?;
        // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged, for as long as the
        // AsyncFd (which owns the RingBuf) lives.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| KernelSensorError::Register(e.into_parts().1))?;
        Ok(Self { ring })
    }

    /// Waits until samples are ready, then decodes up to [`BATCH`] of them into `batch`.
    /// Records too short to be a sample are counted in the returned value.
    pub(crate) async fn read(&mut self, batch: &mut Vec<SampleRecord>) -> std::io::Result<usize> {
        batch.clear();
        let mut malformed = 0;
        let mut guard = self.ring.readable_mut().await?;
        {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                match SampleRecord::decode(&item) {
                    Some(sample) => batch.push(sample),
                    None => malformed += 1,
                }
                if batch.len() >= BATCH {
                    break;
                }
            }
        }
        if batch.len() < BATCH {
            guard.clear_ready();
        }
        Ok(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_short_records() {
        assert!(SampleRecord::decode(&[0u8; 10]).is_none());
        let mut raw = vec![0u8; size_of::<Sample>()];
        raw[8 + 10] = 0xff;
        raw[8 + 11] = 0xff;
        raw[8 + 12..8 + 16].copy_from_slice(&[198, 18, 0, 5]);
        raw[48] = 0; // captured_len low byte stays 0
        let rec = SampleRecord::decode(&raw).unwrap();
        assert_eq!(rec.src, "198.18.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(rec.weight, 1);
    }
}
