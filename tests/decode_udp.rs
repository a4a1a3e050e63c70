//! Real sockets on 127.0.0.1 and a real template-store file.
mod decode_support;

use std::time::Duration;

use decode_support::*;
use flowy::collect::{bind_udp, Decoder, DecoderConfig, TemplateScope};

fn v5_flow(i: u32) -> V5Flow {
    V5Flow {
        src: [10, 0, 0, 1].into(),
        dst: [10, 0, 0, 2].into(),
        sport: 1000 + i as u16,
        dport: 80,
        prot: 6,
        pkts: 1,
        octets: 100 + i,
        first: 1_000,
        last: 2_000,
    }
}

#[tokio::test]
async fn bind_receive_decode() -> std::io::Result<()> {
    let socks = bind_udp(from("127.0.0.1:0"), 2, 1 << 20)?;
    assert_eq!(socks.len(), 2);
    let addr = socks[0].local_addr()?;
    assert_eq!(socks[1].local_addr()?, addr);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0")?;
    // Connected sender: with SO_REUSEPORT the kernel keeps one flow on one socket.
    sender.connect(addr)?;
    for seq in 0..3u32 {
        sender.send(&v5(
            5_000,
            1_700_000_000,
            0,
            seq * 2,
            0,
            &[v5_flow(seq), v5_flow(seq + 10)],
        ))?;
    }
    let mut d = Decoder::new(cfg(TemplateScope::Address));
    let mut recs = Vec::new();
    let (mut b0, mut b1) = (vec![0u8; 65536], vec![0u8; 65536]);
    while recs.len() < 6 {
        // With SO_REUSEPORT the kernel picks one of the sockets for the flow.
        let recv = async {
            tokio::select! {
                r = socks[0].recv_from(&mut b0) => r.map(|(n, a)| (b0[..n].to_vec(), a)),
                r = socks[1].recv_from(&mut b1) => r.map(|(n, a)| (b1[..n].to_vec(), a)),
            }
        };
        let Ok(got) = tokio::time::timeout(Duration::from_secs(5), recv).await else {
            break;
        };
        let (dg, src) = got?;
        d.decode(&dg, src, 0, &mut recs);
    }
    assert_eq!(recs.len(), 6);
    assert_eq!(recs[0].exporter(), Some(sender.local_addr()?.ip()));
    assert_eq!(d.stats().datagrams, 3);
    assert!(d.stats().sequence_gaps.is_empty());
    Ok(())
}

#[test]
fn templates_survive_restart() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("templates.bin");
    let cfg = DecoderConfig {
        template_store: Some(path.clone()),
        ..cfg(TemplateScope::Address)
    };
    let t = set(2, &template(256, &[(8, 4), (12, 4), (1, 4)]));
    let data = set(256, &[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 1, 0]);
    let mut first = Decoder::new(cfg.clone());
    decode(&mut first, &ipfix(1, 0, 7, &[t]), "192.0.2.50:4739");
    first.save_templates()?;
    let mut second = Decoder::new(cfg.clone());
    let recs = decode(
        &mut second,
        &ipfix(1, 0, 7, std::slice::from_ref(&data)),
        "192.0.2.50:4739",
    );
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].bytes(), Some(256));
    // A corrupt store is ignored, never fatal.
    std::fs::write(&path, b"not a template store")?;
    let mut third = Decoder::new(cfg);
    assert!(decode(&mut third, &ipfix(1, 0, 7, &[data]), "192.0.2.50:4739").is_empty());
    Ok(())
}

#[test]
fn decoder_moves_between_threads() {
    fn is_send<T: Send + 'static>(_: &T) -> bool {
        true
    }
    let d = Decoder::new(DecoderConfig::default());
    let handle = std::thread::spawn(move || d.stats().datagrams);
    assert!(is_send(&handle));
    assert_eq!(handle.join().ok(), Some(0));
}
