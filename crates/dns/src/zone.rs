//! The zone as data and the answer to one question about it: [`Zone::lookup`] is a pure
//! function from (name, type) to response code and record sections, with no I/O and no
//! wire format, so every DNS rule the server follows is tested here as data.
//!
//! The rules: names outside the zone are REFUSED (the server is authoritative only and
//! never recurses); inside it every answer is authoritative; a name that does not exist
//! is NXDOMAIN and one that exists without the asked type is NOERROR with no answers
//! (NODATA), both with the SOA in the authority section for negative caching (RFC 2308);
//! zone transfers are refused; names match in any case.

use std::net::Ipv4Addr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::config;

/// The answer to one question, before it becomes a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// The AA flag: set for every answer from inside the zone.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self::error(ResponseCode::Refused)
    }

    fn error(rcode: ResponseCode) -> Self {
        Answer {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }
}

/// Every record of the zone, indexed by owner name.
#[derive(Clone, Debug)]
pub struct Zone {
    origin: Name,
    ns: Name,
    /// The SOA as it appears in negative answers: its TTL is the lesser of the record's
    /// TTL and the SOA minimum (RFC 2308 section 3).
    negative_soa: Record,
    /// Each owner name (lower case, fully qualified) with its records in the order they
    /// are served; the apex first.
    names: Vec<(Name, Vec<Record>)>,
}

impl Zone {
    /// Builds the records of a validated zone config: SOA, NS and CAA at the apex, A for
    /// the apex and `www` (the site), A for the name server.
    pub fn new(z: &config::Zone) -> Zone {
        let record = |name: &Name, ttl: u32, rdata: RData| {
            let mut r = Record::from_rdata(name.clone(), ttl, rdata);
            r.set_dns_class(DNSClass::IN);
            r
        };
        let origin = z.name.to_lowercase();
        let ns = z.ns.to_lowercase();
        let soa = SOA::new(
            z.soa.mname.clone(),
            z.soa.rname.clone(),
            z.soa.serial,
            // Config bounds keep these far below i32::MAX.
            i32::try_from(z.soa.refresh).unwrap_or(i32::MAX),
            i32::try_from(z.soa.retry).unwrap_or(i32::MAX),
            i32::try_from(z.soa.expire).unwrap_or(i32::MAX),
            z.soa.minimum,
        );
        let negative_soa = record(&origin, z.ttl.min(z.soa.minimum), RData::SOA(soa.clone()));
        let a = |ip: Ipv4Addr| RData::A(A(ip));
        let mut apex = vec![
            record(&origin, z.ttl, RData::SOA(soa)),
            record(&origin, z.ttl, RData::NS(NS(ns.clone()))),
            record(&origin, z.ttl, a(z.site)),
        ];
        apex.extend(
            z.caa
                .iter()
                .map(|caa| record(&origin, z.ttl, RData::CAA(caa.clone()))),
        );
        let mut zone = Zone {
            origin: origin.clone(),
            ns: ns.clone(),
            negative_soa,
            names: vec![(origin.clone(), apex)],
        };
        // Fits: "www" plus a valid zone name is checked by the config's length limit on
        // the name server's name, which is at least as long.
        if let Ok(www) = Name::from_ascii("www").and_then(|w| w.append_domain(&origin)) {
            zone.add(record(&www, z.ttl, a(z.site)));
        }
        zone.add(record(&ns, z.ttl, a(z.ns_address)));
        zone
    }

    /// Adds `r` under its owner name unless the same record is already there.
    fn add(&mut self, r: Record) {
        match self.names.iter_mut().find(|(n, _)| n == r.name()) {
            Some((_, records)) => {
                if !records.contains(&r) {
                    records.push(r);
                }
            }
            None => self.names.push((r.name().clone(), vec![r])),
        }
    }

    /// The zone's apex.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    fn records(&self, name: &Name) -> Option<&[Record]> {
        self.names
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.as_slice())
    }

    /// Answers one question of class IN. Pure: the same question always gets the same
    /// answer.
    pub fn lookup(&self, qname: &Name, qtype: RecordType) -> Answer {
        let mut name = qname.to_lowercase();
        name.set_fqdn(true);
        if !self.origin.zone_of(&name) {
            return Answer::refused();
        }
        match qtype {
            // Zone transfers are not offered: secondaries are not part of the design.
            RecordType::AXFR | RecordType::IXFR => return Answer::refused(),
            // Pseudo-types that only exist in the additional section.
            RecordType::OPT | RecordType::TSIG => return Answer::error(ResponseCode::FormErr),
            _ => {}
        }
        let Some(records) = self.records(&name) else {
            return Answer {
                rcode: ResponseCode::NXDomain,
                authoritative: true,
                answers: Vec::new(),
                authority: vec![self.negative_soa.clone()],
                additional: Vec::new(),
            };
        };
        let answers: Vec<Record> = if qtype == RecordType::ANY {
            // RFC 8482: answer ANY with one RRset rather than everything, so the server
            // is a poor amplifier.
            let first = records.first().map(Record::record_type);
            records
                .iter()
                .filter(|r| Some(r.record_type()) == first)
                .cloned()
                .collect()
        } else {
            records
                .iter()
                .filter(|r| r.record_type() == qtype)
                .cloned()
                .collect()
        };
        if answers.is_empty() {
            return Answer {
                rcode: ResponseCode::NoError,
                authoritative: true,
                answers,
                authority: vec![self.negative_soa.clone()],
                additional: Vec::new(),
            };
        }
        // The name server's address rides along with NS answers, saving a round trip.
        let additional = if answers.iter().any(|r| r.record_type() == RecordType::NS) {
            self.records(&self.ns)
                .into_iter()
                .flatten()
                .filter(|r| r.record_type() == RecordType::A)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers,
            authority: Vec::new(),
            additional,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_telemetry::config::ConfigFile;
    use std::path::Path;

    fn zone(extra: &str) -> Zone {
        let text = format!(
            "[zone]\nname = \"foobar.com\"\nsite = \"203.0.113.10\"\nns_address = \"203.0.113.53\"\n{extra}"
        );
        let config = config::Config::parse(Path::new("dns.toml"), &text).unwrap();
        Zone::new(&config.zone)
    }

    /// Renders records as `name TTL TYPE rdata`, the way a zone file would.
    fn show(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name(), r.ttl(), r.record_type(), r.data()))
            .collect()
    }

    /// Asks `zone` about (`name`, `qtype`) and compares every part of the answer.
    fn check_in(
        zone: &Zone,
        name: &str,
        qtype: RecordType,
        rcode: ResponseCode,
        answers: &[&str],
        authority: &[&str],
    ) -> Answer {
        let got = zone.lookup(&Name::from_ascii(name).unwrap(), qtype);
        let ctx = format!("{name} {qtype}");
        assert_eq!(got.rcode, rcode, "{ctx}: rcode");
        assert_eq!(
            got.authoritative,
            !matches!(rcode, ResponseCode::Refused | ResponseCode::FormErr),
            "{ctx}: AA"
        );
        assert_eq!(show(&got.answers), answers, "{ctx}: answers");
        assert_eq!(show(&got.authority), authority, "{ctx}: authority");
        got
    }

    fn check(name: &str, qtype: RecordType, rcode: ResponseCode, answers: &[&str]) {
        let authority: &[&str] = if answers.is_empty()
            && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain)
        {
            &[SOA_NEG]
        } else {
            &[]
        };
        check_in(&zone(""), name, qtype, rcode, answers, authority);
    }

    const SOA_NEG: &str = "foobar.com. 300 SOA ns1.foobar.com. hostmaster.foobar.com. 2026112301 3600 900 1209600 300";
    use RecordType as T;
    use ResponseCode::{FormErr, NXDomain, NoError, Refused};

    #[test]
    fn positive_answers() {
        check(
            "foobar.com.",
            T::A,
            NoError,
            &["foobar.com. 300 A 203.0.113.10"],
        );
        check(
            "www.foobar.com.",
            T::A,
            NoError,
            &["www.foobar.com. 300 A 203.0.113.10"],
        );
        check(
            "ns1.foobar.com.",
            T::A,
            NoError,
            &["ns1.foobar.com. 300 A 203.0.113.53"],
        );
        check(
            "foobar.com.",
            T::NS,
            NoError,
            &["foobar.com. 300 NS ns1.foobar.com."],
        );
        check("foobar.com.", T::SOA, NoError, &[SOA_NEG]);
        check(
            "foobar.com.",
            T::CAA,
            NoError,
            &["foobar.com. 300 CAA 0 issue \";\""],
        );
    }

    #[test]
    fn names_match_in_any_case_and_without_the_root() {
        check(
            "WWW.FooBar.COM.",
            T::A,
            NoError,
            &["www.foobar.com. 300 A 203.0.113.10"],
        );
        check(
            "www.foobar.com",
            T::A,
            NoError,
            &["www.foobar.com. 300 A 203.0.113.10"],
        );
        check(
            "NS1.FOOBAR.COM",
            T::A,
            NoError,
            &["ns1.foobar.com. 300 A 203.0.113.53"],
        );
        check("NOPE.foobar.com.", T::A, NXDomain, &[]);
        check("EXAMPLE.org.", T::A, Refused, &[]);
    }

    #[test]
    fn existing_names_without_the_type_are_nodata() {
        check("www.foobar.com.", T::AAAA, NoError, &[]);
        check("www.foobar.com.", T::MX, NoError, &[]);
        check("www.foobar.com.", T::CAA, NoError, &[]);
        check("www.foobar.com.", T::SOA, NoError, &[]);
        check("foobar.com.", T::AAAA, NoError, &[]);
        check("foobar.com.", T::TXT, NoError, &[]);
        check("foobar.com.", T::MX, NoError, &[]);
        check("ns1.foobar.com.", T::NS, NoError, &[]);
        check("ns1.foobar.com.", T::AAAA, NoError, &[]);
    }

    #[test]
    fn missing_names_in_the_zone_are_nxdomain() {
        check("nope.foobar.com.", T::A, NXDomain, &[]);
        check("nope.foobar.com.", T::AAAA, NXDomain, &[]);
        check("a.www.foobar.com.", T::A, NXDomain, &[]);
        check("ns2.foobar.com.", T::A, NXDomain, &[]);
        check("_acme-challenge.foobar.com.", T::TXT, NXDomain, &[]);
        check("*.foobar.com.", T::A, NXDomain, &[]);
    }

    #[test]
    fn names_outside_the_zone_are_refused() {
        check("example.org.", T::A, Refused, &[]);
        check("com.", T::NS, Refused, &[]);
        check(".", T::NS, Refused, &[]);
        check("xfoobar.com.", T::A, Refused, &[]);
        check("foobar.com.evil.", T::A, Refused, &[]);
        check("www.foobar.co.", T::A, Refused, &[]);
        check("10.113.0.203.in-addr.arpa.", T::PTR, Refused, &[]);
        check("version.bind.", T::TXT, Refused, &[]);
    }

    #[test]
    fn transfers_and_meta_types() {
        check("foobar.com.", T::AXFR, Refused, &[]);
        check("foobar.com.", T::IXFR, Refused, &[]);
        check("example.org.", T::AXFR, Refused, &[]);
        check("foobar.com.", T::OPT, FormErr, &[]);
        // ANY gets one RRset (RFC 8482): the apex's SOA, www's A.
        check("foobar.com.", T::ANY, NoError, &[SOA_NEG]);
        check(
            "www.foobar.com.",
            T::ANY,
            NoError,
            &["www.foobar.com. 300 A 203.0.113.10"],
        );
        check("nope.foobar.com.", T::ANY, NXDomain, &[]);
    }

    #[test]
    fn ns_answers_carry_the_name_server_address() {
        let got = zone("").lookup(&Name::from_ascii("foobar.com.").unwrap(), T::NS);
        assert_eq!(
            show(&got.additional),
            ["ns1.foobar.com. 300 A 203.0.113.53"]
        );
        let got = zone("").lookup(&Name::from_ascii("www.foobar.com.").unwrap(), T::A);
        assert!(got.additional.is_empty());
    }

    #[test]
    fn negative_ttl_is_the_lesser_of_ttl_and_soa_minimum() {
        let z = zone("ttl = \"1h\"\n[zone.soa]\nminimum = \"60s\"");
        let soa = "foobar.com. 60 SOA ns1.foobar.com. hostmaster.foobar.com. 2026112301 3600 900 1209600 60";
        check_in(&z, "nope.foobar.com.", T::A, NXDomain, &[], &[soa]);
        check_in(&z, "www.foobar.com.", T::TXT, NoError, &[], &[soa]);
        let positive = "foobar.com. 3600 SOA ns1.foobar.com. hostmaster.foobar.com. 2026112301 3600 900 1209600 60";
        check_in(&z, "foobar.com.", T::SOA, NoError, &[positive], &[]);
        let z = zone("ttl = \"30s\"");
        let soa = "foobar.com. 30 SOA ns1.foobar.com. hostmaster.foobar.com. 2026112301 3600 900 1209600 300";
        check_in(&z, "nope.foobar.com.", T::A, NXDomain, &[], &[soa]);
    }

    #[test]
    fn configured_names_and_records() {
        let z = zone(
            "ns = \"DNS\"\ncaa = ['0 issue \"ca.example\"', '0 iodef \"mailto:sec@foobar.com\"']\n[zone.soa]\nserial = 42",
        );
        check_in(
            &z,
            "dns.foobar.com.",
            T::A,
            NoError,
            &["dns.foobar.com. 300 A 203.0.113.53"],
            &[],
        );
        check_in(&z, "ns1.foobar.com.", T::A, NXDomain, &[], &["foobar.com. 300 SOA dns.foobar.com. hostmaster.foobar.com. 42 3600 900 1209600 300"]);
        check_in(
            &z,
            "foobar.com.",
            T::CAA,
            NoError,
            &[
                "foobar.com. 300 CAA 0 issue \"ca.example\"",
                "foobar.com. 300 CAA 0 iodef \"mailto:sec@foobar.com\"",
            ],
            &[],
        );
        // A name server called www shares www's name: both addresses are served.
        let z = zone("ns = \"www\"");
        check_in(
            &z,
            "www.foobar.com.",
            T::A,
            NoError,
            &[
                "www.foobar.com. 300 A 203.0.113.10",
                "www.foobar.com. 300 A 203.0.113.53",
            ],
            &[],
        );
    }
}
