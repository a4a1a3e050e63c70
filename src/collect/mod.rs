//! Collector: UDP sockets, datagram → record decoding, templates.
