//! One request to one response, as bytes: decodes a query, asks [`Zone::lookup`] and
//! encodes the answer within the transport's size limit. Pure like the lookup, so every
//! wire-level rule (malformed input, opcodes, EDNS, truncation) is tested without sockets.
//!
//! Never panics on input: anything that is not a query gets FORMERR when its header can
//! be read, and no response at all when it cannot or when it is itself a response (so two
//! servers can never be made to answer each other forever).

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::DNSClass;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zone::Zone;

/// Where a request came from, which bounds the response's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The classic UDP limit, for clients without EDNS.
const UDP_PLAIN: usize = 512;
/// The largest UDP response sent to EDNS clients, whatever they advertise: the DNS flag
/// day 2020 value, which avoids IP fragmentation.
const UDP_EDNS_MAX: u16 = 1232;

/// The response to `request`, or `None` when nothing should be sent.
pub fn respond(zone: &Zone, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(request)).ok()?;
    if header.message_type() == MessageType::Response {
        return None;
    }
    let Ok(req) = Message::from_vec(request) else {
        return encode(&error(&header, ResponseCode::FormErr));
    };
    let mut resp = Message::new();
    let mut h = Header::response_from_request(req.header());
    // RA stays unset: this server never recurses. AD is never set: no DNSSEC.
    h.set_recursion_available(false).set_authentic_data(false);
    resp.set_header(h);
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => req.extensions().as_ref().map_or(UDP_PLAIN, |e| {
            usize::from(e.max_payload().clamp(UDP_PLAIN as u16, UDP_EDNS_MAX))
        }),
    };
    if let Some(req_edns) = req.extensions() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_EDNS_MAX).set_version(0);
        // RFC 3225: the DO bit is copied into the response.
        edns.set_dnssec_ok(req_edns.flags().dnssec_ok);
        resp.set_edns(edns);
        if req_edns.version() > 0 {
            resp.set_response_code(ResponseCode::BADVERS);
            return encode(&resp);
        }
    }
    if req.op_code() != OpCode::Query {
        resp.add_queries(req.queries().iter().cloned());
        resp.set_response_code(ResponseCode::NotImp);
        return encode(&resp);
    }
    let [query] = req.queries() else {
        resp.set_response_code(ResponseCode::FormErr);
        return encode(&resp);
    };
    resp.add_query(query.clone());
    if query.query_class() != DNSClass::IN {
        resp.set_response_code(ResponseCode::Refused);
        return encode(&resp);
    }
    let answer = zone.lookup(query.name(), query.query_type());
    resp.set_response_code(answer.rcode);
    resp.set_authoritative(answer.authoritative);
    resp.insert_answers(answer.answers);
    resp.insert_name_servers(answer.authority);
    resp.insert_additionals(answer.additional);
    fit(resp, limit)
}

/// Encodes `resp` within `limit` bytes: first whole, then without the additional section
/// (which is optional), then truncated (TC set, question only) so the client retries over
/// TCP.
fn fit(mut resp: Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = encode(&resp)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.take_additionals();
    let bytes = encode(&resp)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    encode(&resp.truncate())
}

/// A header-only error response to a request whose body could not be read.
fn error(req: &Header, rcode: ResponseCode) -> Message {
    let mut h = Header::response_from_request(req);
    h.set_recursion_available(false)
        .set_authentic_data(false)
        .set_authoritative(false)
        .set_response_code(rcode);
    let mut m = Message::new();
    m.set_header(h);
    m
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    match m.to_vec() {
        Ok(b) => Some(b),
        Err(error) => {
            // Only a bug could get here (every record comes from a validated zone).
            tracing::error!(%error, "cannot encode a response");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use hickory_proto::op::Query;
    use hickory_proto::rr::{Name, RecordType};
    use rampart_telemetry::config::ConfigFile;
    use std::path::Path;

    fn zone(extra: &str) -> Zone {
        let text = format!(
            "[zone]\nname = \"foobar.com\"\nsite = \"203.0.113.10\"\nns_address = \"203.0.113.53\"\n{extra}"
        );
        Zone::new(&Config::parse(Path::new("dns.toml"), &text).unwrap().zone)
    }

    fn query(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new();
        m.set_id(0x1234)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m
    }

    fn ask(zone: &Zone, req: &Message, transport: Transport) -> Message {
        let bytes = respond(zone, &req.to_vec().unwrap(), transport).expect("a response");
        Message::from_vec(&bytes).unwrap()
    }

    #[test]
    fn answers_carry_the_request_id_question_and_flags() {
        let req = query("WWW.foobar.com.", RecordType::A);
        let resp = ask(&zone(""), &req, Transport::Udp);
        assert_eq!(resp.id(), 0x1234);
        assert_eq!(resp.message_type(), MessageType::Response);
        assert_eq!(resp.response_code(), ResponseCode::NoError);
        assert!(resp.authoritative());
        assert!(resp.recursion_desired(), "RD is copied");
        assert!(!resp.recursion_available());
        // The question comes back as asked, case and all (resolvers check it: 0x20).
        assert_eq!(resp.queries(), req.queries());
        assert!(resp.queries()[0]
            .name()
            .eq_case(&Name::from_ascii("WWW.foobar.com.").unwrap()));
        assert_eq!(resp.answers().len(), 1);
        assert!(
            resp.extensions().is_none(),
            "no OPT without one in the request"
        );
    }

    #[test]
    fn refused_outside_the_zone_without_aa() {
        let resp = ask(
            &zone(""),
            &query("example.org.", RecordType::A),
            Transport::Tcp,
        );
        assert_eq!(resp.response_code(), ResponseCode::Refused);
        assert!(!resp.authoritative());
        assert!(resp.answers().is_empty() && resp.name_servers().is_empty());
    }

    #[test]
    fn nxdomain_has_the_soa_in_authority() {
        let resp = ask(
            &zone(""),
            &query("nope.foobar.com.", RecordType::A),
            Transport::Udp,
        );
        assert_eq!(resp.response_code(), ResponseCode::NXDomain);
        assert!(resp.authoritative());
        assert_eq!(resp.name_servers().len(), 1);
        assert_eq!(resp.name_servers()[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn other_classes_and_opcodes() {
        let z = zone("");
        let mut req = query("version.bind.", RecordType::TXT);
        req.queries_mut()[0].set_query_class(DNSClass::CH);
        assert_eq!(
            ask(&z, &req, Transport::Udp).response_code(),
            ResponseCode::Refused
        );
        let mut req = query("www.foobar.com.", RecordType::A);
        req.queries_mut()[0].set_query_class(DNSClass::CH);
        assert_eq!(
            ask(&z, &req, Transport::Udp).response_code(),
            ResponseCode::Refused
        );
        for op in [OpCode::Update, OpCode::Notify, OpCode::Status] {
            let mut req = query("foobar.com.", RecordType::SOA);
            req.set_op_code(op);
            let resp = ask(&z, &req, Transport::Udp);
            assert_eq!(resp.response_code(), ResponseCode::NotImp, "{op:?}");
            assert_eq!(resp.op_code(), op);
        }
    }

    #[test]
    fn question_count_other_than_one_is_formerr() {
        let z = zone("");
        let mut req = query("foobar.com.", RecordType::SOA);
        req.add_query(Query::query(
            Name::from_ascii("www.foobar.com.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            ask(&z, &req, Transport::Udp).response_code(),
            ResponseCode::FormErr
        );
        let mut req = Message::new();
        req.set_id(7);
        let resp = ask(&z, &req, Transport::Udp);
        assert_eq!(
            (resp.id(), resp.response_code()),
            (7, ResponseCode::FormErr)
        );
    }

    #[test]
    fn malformed_input_never_panics() {
        let z = zone("");
        // Too short for a header: silence.
        for bytes in [&b""[..], b"\x00", b"hello world"] {
            assert_eq!(respond(&z, bytes, Transport::Udp), None);
        }
        // A header claiming a question that is not there: FORMERR with the same id.
        let bytes = b"\xab\xcd\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www";
        let resp = Message::from_vec(&respond(&z, bytes, Transport::Udp).unwrap()).unwrap();
        assert_eq!(
            (resp.id(), resp.response_code()),
            (0xabcd, ResponseCode::FormErr)
        );
        assert!(resp.queries().is_empty());
        // A name compression pointer to itself.
        let bytes = b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01";
        let resp = Message::from_vec(&respond(&z, bytes, Transport::Udp).unwrap()).unwrap();
        assert_eq!(resp.response_code(), ResponseCode::FormErr);
        // Every prefix and many byte flips of a real query.
        let good = query("www.foobar.com.", RecordType::A).to_vec().unwrap();
        for n in 0..good.len() {
            let _ = respond(&z, &good[..n], Transport::Udp);
        }
        for i in 0..good.len() {
            for b in [0x00, 0x3f, 0x40, 0xc0, 0xff] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = respond(&z, &bad, Transport::Tcp);
            }
        }
    }

    #[test]
    fn responses_are_never_answered() {
        let mut m = query("www.foobar.com.", RecordType::A);
        m.set_message_type(MessageType::Response);
        assert_eq!(
            respond(&zone(""), &m.to_vec().unwrap(), Transport::Udp),
            None
        );
    }

    #[test]
    fn edns_is_answered_with_edns() {
        let z = zone("");
        let mut req = query("www.foobar.com.", RecordType::A);
        let mut e = Edns::new();
        e.set_max_payload(4096).set_dnssec_ok(true);
        req.set_edns(e);
        let resp = ask(&z, &req, Transport::Udp);
        let edns = resp.extensions().as_ref().expect("OPT in the response");
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.flags().dnssec_ok);
        assert_eq!(resp.response_code(), ResponseCode::NoError);

        let mut e = Edns::new();
        e.set_version(1);
        req.set_edns(e);
        let resp = ask(&z, &req, Transport::Udp);
        // BADVERS (16) decodes as its twin BADSIG, which shares the number.
        assert_eq!(u16::from(resp.response_code()), 16);
        assert!(resp.answers().is_empty());
    }

    #[test]
    fn large_answers_are_truncated_over_udp_only() {
        let caa: Vec<String> = (0..12)
            .map(|i| {
                format!("'0 issue \"ca{i}.a-rather-long-certificate-authority-name.example\"'")
            })
            .collect();
        let z = zone(&format!("caa = [{}]", caa.join(", ")));
        let req = query("foobar.com.", RecordType::CAA);
        let udp = ask(&z, &req, Transport::Udp);
        assert!(udp.truncated());
        assert!(udp.answers().is_empty());
        assert_eq!(udp.queries(), req.queries());
        let tcp = ask(&z, &req, Transport::Tcp);
        assert!(!tcp.truncated());
        assert_eq!(tcp.answers().len(), 12);
        // With EDNS the larger UDP size fits it.
        let mut req = req;
        let mut e = Edns::new();
        e.set_max_payload(1232);
        req.set_edns(e);
        let udp = ask(&z, &req, Transport::Udp);
        assert!(!udp.truncated());
        assert_eq!(udp.answers().len(), 12);
    }
}
