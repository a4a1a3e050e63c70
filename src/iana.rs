//! IANA IPFIX information elements queryable by name beyond the canonical
//! table (SPEC §1.1: "every IANA IPFIX information element that an exporter
//! sends SHOULD be queryable by its IANA name").
//!
//! Elements already covered by a canonical field (addresses, ports, counters,
//! times, …) are not listed here: the canonical field answers for them.

use crate::record::FieldType;

/// One information element: id, IANA name and value type.
#[derive(Clone, Copy, Debug)]
pub struct Element {
    pub id: u16,
    pub name: &'static str,
    pub ty: FieldType,
}

const fn ie(id: u16, name: &'static str, ty: FieldType) -> Element {
    Element { id, name, ty }
}

use FieldType::{Ip, Text, Uint};

/// The elements flowy knows by name (IANA registry "IPFIX Information Elements").
pub const ELEMENTS: &[Element] = &[
    ie(3, "deltaFlowCount", Uint),
    ie(18, "bgpNextHopIPv4Address", Ip),
    ie(19, "postMCastPacketDeltaCount", Uint),
    ie(20, "postMCastOctetDeltaCount", Uint),
    ie(23, "postOctetDeltaCount", Uint),
    ie(24, "postPacketDeltaCount", Uint),
    ie(25, "minimumIpTotalLength", Uint),
    ie(26, "maximumIpTotalLength", Uint),
    ie(29, "sourceIPv6PrefixLength", Uint),
    ie(30, "destinationIPv6PrefixLength", Uint),
    ie(31, "flowLabelIPv6", Uint),
    ie(32, "icmpTypeCodeIPv4", Uint),
    ie(33, "igmpType", Uint),
    ie(40, "exportedOctetTotalCount", Uint),
    ie(41, "exportedMessageTotalCount", Uint),
    ie(42, "exportedFlowRecordTotalCount", Uint),
    ie(52, "minimumTTL", Uint),
    ie(53, "maximumTTL", Uint),
    ie(54, "fragmentIdentification", Uint),
    ie(55, "postIpClassOfService", Uint),
    ie(56, "sourceMacAddress", Text),
    ie(57, "postDestinationMacAddress", Text),
    ie(58, "vlanId", Uint),
    ie(59, "postVlanId", Uint),
    ie(60, "ipVersion", Uint),
    ie(61, "flowDirection", Uint),
    ie(63, "bgpNextHopIPv6Address", Ip),
    ie(64, "ipv6ExtensionHeaders", Uint),
    ie(70, "mplsTopLabelStackSection", Text),
    ie(80, "destinationMacAddress", Text),
    ie(81, "postSourceMacAddress", Text),
    ie(82, "interfaceName", Text),
    ie(83, "interfaceDescription", Text),
    ie(85, "octetTotalCount", Uint),
    ie(86, "packetTotalCount", Uint),
    ie(88, "fragmentOffset", Uint),
    ie(89, "forwardingStatus", Uint),
    ie(94, "applicationDescription", Text),
    ie(95, "applicationId", Text),
    ie(96, "applicationName", Text),
    ie(128, "bgpNextAdjacentAsNumber", Uint),
    ie(129, "bgpPrevAdjacentAsNumber", Uint),
    ie(130, "exporterIPv4Address", Ip),
    ie(131, "exporterIPv6Address", Ip),
    ie(136, "flowEndReason", Uint),
    ie(139, "icmpTypeCodeIPv6", Uint),
    ie(144, "exportingProcessId", Uint),
    ie(148, "flowId", Uint),
    ie(149, "observationDomainId", Uint),
    ie(176, "icmpTypeIPv4", Uint),
    ie(177, "icmpCodeIPv4", Uint),
    ie(178, "icmpTypeIPv6", Uint),
    ie(179, "icmpCodeIPv6", Uint),
    ie(184, "tcpSequenceNumber", Uint),
    ie(185, "tcpAcknowledgementNumber", Uint),
    ie(186, "tcpWindowSize", Uint),
    ie(192, "ipTTL", Uint),
    ie(193, "nextHeaderIPv6", Uint),
    ie(195, "ipDiffServCodePoint", Uint),
    ie(196, "ipPrecedence", Uint),
    ie(197, "fragmentFlags", Uint),
    ie(205, "udpMessageLength", Uint),
    ie(206, "isMulticast", Uint),
    ie(209, "tcpOptions", Uint),
    ie(224, "ipTotalLength", Uint),
    ie(225, "postNATSourceIPv4Address", Ip),
    ie(226, "postNATDestinationIPv4Address", Ip),
    ie(227, "postNAPTSourceTransportPort", Uint),
    ie(228, "postNAPTDestinationTransportPort", Uint),
    ie(230, "natEvent", Uint),
    ie(233, "firewallEvent", Uint),
    ie(234, "ingressVRFID", Uint),
    ie(235, "egressVRFID", Uint),
    ie(239, "biflowDirection", Uint),
    ie(243, "dot1qVlanId", Uint),
    ie(281, "postNATSourceIPv6Address", Ip),
    ie(282, "postNATDestinationIPv6Address", Ip),
    ie(346, "privateEnterpriseNumber", Uint),
];

pub fn by_name(name: &str) -> Option<&'static Element> {
    ELEMENTS.iter().find(|e| e.name == name)
}

/// Ids below this have a slot in `BY_ID`; every listed id must (checked at
/// compile time by the table's construction).
const ID_SLOTS: usize = 512;

/// Position in `ELEMENTS` + 1 by element id (0: not listed). The decoder
/// looks up every non-canonical field of every record here: a linear search
/// of `ELEMENTS` was a quarter of the decode time of softflowd's records
/// (flowDirection, flowEndReason, ipVersion in every record).
const BY_ID: [u8; ID_SLOTS] = {
    assert!(ELEMENTS.len() < u8::MAX as usize);
    let mut t = [0u8; ID_SLOTS];
    let mut i = 0;
    while i < ELEMENTS.len() {
        t[ELEMENTS[i].id as usize] = (i + 1) as u8;
        i += 1;
    }
    t
};

pub fn by_id(id: u16) -> Option<&'static Element> {
    let slot = *BY_ID.get(usize::from(id))?;
    ELEMENTS.get(usize::from(slot).checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_found_by_id_and_unlisted_ids_are_not() {
        for e in ELEMENTS {
            assert_eq!(by_id(e.id).map(|f| f.name), Some(e.name), "id {}", e.id);
        }
        let listed = |id: u16| ELEMENTS.iter().any(|e| e.id == id);
        for id in (0..=u16::MAX).filter(|id| !listed(*id)) {
            assert!(by_id(id).is_none(), "id {id} is not listed");
        }
    }
}
