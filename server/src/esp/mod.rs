//! ESP (RFC 4303, 3948), sans-IO.
