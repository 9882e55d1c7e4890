//! The real resolver: hickory-resolver, with the host's /etc/resolv.conf or the
//! `[dns] server`, no cache (each refresh asks the server, and TTLs are the server's).

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use hickory_resolver::{
    config::{NameServerConfig, ResolveHosts, ResolverConfig},
    net::{runtime::TokioRuntimeProvider, NetError},
    proto::rr::{RData, RecordType},
    TokioResolver,
};

use super::{Lookup, Outcome, Resolve, Resolved};
use crate::config::{DnsQuery, DnsSettings};

/// Why the resolver could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("setting up the DNS resolver: {0}")]
pub struct SetupError(#[source] NetError);

pub struct HickoryResolver {
    inner: TokioResolver,
}

impl HickoryResolver {
    /// A resolver asking `settings.server`, else the servers of /etc/resolv.conf.
    pub fn new(settings: &DnsSettings) -> Result<Self, SetupError> {
        let mut builder = match settings.server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(SetupError)?,
        };
        let opts = builder.options_mut();
        opts.cache_size = 0;
        opts.timeout = settings.timeout;
        opts.attempts = 1;
        opts.use_hosts_file = ResolveHosts::Never;
        Ok(HickoryResolver {
            inner: builder.build().map_err(SetupError)?,
        })
    }

    /// The records of one type: `Ok(None)` for none (NOERROR), NXDOMAIN as `Err(None)`,
    /// other failures as `Err(Some(why))`.
    async fn records(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Option<(Vec<RData>, u32)>, Option<String>> {
        match self.inner.lookup(format!("{name}."), rtype).await {
            Ok(l) => {
                let wanted: Vec<_> = l
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .collect();
                let ttl = wanted.iter().map(|r| r.ttl).min();
                Ok(ttl.map(|ttl| (wanted.iter().map(|r| r.data.clone()).collect(), ttl)))
            }
            Err(e) if e.is_nx_domain() => Err(None),
            Err(e) if e.is_no_records_found() => Ok(None),
            Err(e) => Err(Some(e.to_string())),
        }
    }

    /// The addresses of `name` in the families asked, with `port` and `weight`, and
    /// the smallest TTL.
    async fn host(
        &self,
        name: &str,
        port: u16,
        weight: u16,
        v4: bool,
        v6: bool,
    ) -> Result<Option<(Vec<Resolved>, u32)>, Option<String>> {
        let mut found = Vec::new();
        let mut ttl: Option<u32> = None;
        let mut nx = true;
        for (rtype, on) in [(RecordType::A, v4), (RecordType::AAAA, v6)] {
            if !on {
                continue;
            }
            match self.records(name, rtype).await {
                Ok(Some((data, t))) => {
                    nx = false;
                    ttl = Some(ttl.map_or(t, |x| x.min(t)));
                    for d in data {
                        let ip = match d {
                            RData::A(a) => a.0.into(),
                            RData::AAAA(a) => a.0.into(),
                            _ => continue,
                        };
                        found.push(Resolved {
                            addr: SocketAddr::new(ip, port),
                            weight,
                        });
                    }
                }
                Ok(None) => nx = false,
                Err(None) => {}
                Err(Some(why)) => return Err(Some(why)),
            }
        }
        match ttl {
            Some(t) => Ok(Some((found, t))),
            None if nx => Err(None),
            None => Ok(None),
        }
    }

    async fn lookup(&self, l: Lookup) -> Outcome {
        let result = match l.query {
            DnsQuery::Host { port } => self.host(&l.name, port, 1, l.v4, l.v6).await,
            DnsQuery::Srv => self.srv(&l).await,
        };
        match result {
            Ok(Some((backends, ttl))) if !backends.is_empty() => Outcome::Answer {
                backends,
                ttl: Duration::from_secs(u64::from(ttl)),
            },
            Ok(_) => Outcome::Empty,
            Err(None) => Outcome::NxDomain,
            Err(Some(why)) => Outcome::Failed(why),
        }
    }

    /// SRV records of the lowest priority value (the others are fallbacks vipd does
    /// not use), each target's addresses with the record's port and weight.
    async fn srv(&self, l: &Lookup) -> Result<Option<(Vec<Resolved>, u32)>, Option<String>> {
        let Some((data, mut ttl)) = self.records(&l.name, RecordType::SRV).await? else {
            return Ok(None);
        };
        let srvs: Vec<_> = data
            .into_iter()
            .filter_map(|d| match d {
                RData::SRV(s) => Some(s),
                _ => None,
            })
            .filter(|s| !s.target.is_root())
            .collect();
        let Some(best) = srvs.iter().map(|s| s.priority).min() else {
            return Ok(None);
        };
        let mut found = Vec::new();
        for s in srvs.iter().filter(|s| s.priority == best) {
            let target = s.target.to_ascii();
            let target = target.trim_end_matches('.');
            match self.host(target, s.port, s.weight, l.v4, l.v6).await {
                Ok(Some((mut got, t))) => {
                    ttl = ttl.min(t);
                    found.append(&mut got);
                }
                // A target without addresses (of the families asked) gives none.
                Ok(None) | Err(None) => {}
                Err(Some(why)) => return Err(Some(format!("target {target}: {why}"))),
            }
        }
        Ok(Some((found, ttl)))
    }
}

impl Resolve for HickoryResolver {
    fn resolve(&self, lookup: Lookup) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        Box::pin(self.lookup(lookup))
    }
}

/// A resolver that could not be set up: every resolution fails with why, so the
/// names' last good sets are kept and status says what is wrong.
struct Broken(String);

impl Resolve for Broken {
    fn resolve(&self, _: Lookup) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        let why = self.0.clone();
        Box::pin(async move { Outcome::Failed(why) })
    }
}

/// The resolver for `settings` (see [`super::task::MakeResolver`]).
pub fn make(settings: &DnsSettings) -> std::sync::Arc<dyn Resolve> {
    match HickoryResolver::new(settings) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            tracing::error!(error = %e, "DNS backends cannot be resolved");
            std::sync::Arc::new(Broken(e.to_string()))
        }
    }
}
