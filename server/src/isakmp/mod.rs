//! ISAKMP wire format (RFC 2408, 2407, 3947).
