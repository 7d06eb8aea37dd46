//! Fuzzes the DNS server's message handler (`handler::respond`) over UDP and TCP
//! against the built-in zone. Checks: no panic; an answer is a well-formed response
//! message with the query's id, within the transport's size limit (1232 bytes over UDP,
//! the largest this server ever sends there).

#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use rampart_dns::config::Config;
use rampart_dns::handler::{respond, Transport};
use rampart_dns::zone::Zone;
use rampart_telemetry::config::ConfigFile;

fn zone() -> &'static Zone {
    static ZONE: OnceLock<Zone> = OnceLock::new();
    ZONE.get_or_init(|| {
        let text = "[zone]\nname = \"foobar.com\"\nsite = \"203.0.113.10\"\nns_address = \"203.0.113.53\"\ncaa = [\"0 issue \\\"letsencrypt.org\\\"\"]\n";
        let config = Config::parse(Path::new("dns.toml"), text).expect("the fuzz zone is valid");
        Zone::new(&config.zone)
    })
}

fuzz_target!(|data: &[u8]| {
    for (transport, limit) in [(Transport::Udp, 1232), (Transport::Tcp, usize::from(u16::MAX))] {
        let Some(answer) = respond(zone(), data, transport) else {
            continue;
        };
        assert!(answer.len() <= limit, "{} bytes over {transport:?}", answer.len());
        let m = Message::from_vec(&answer).expect("the answer parses");
        assert_eq!(m.message_type(), MessageType::Response);
        assert_eq!(&answer[..2], &data[..2], "the answer carries the query's id");
    }
});
