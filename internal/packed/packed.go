// Package packed compresses the bodies of the worker's larger internal
// messages — a REVOKE batch, an AUDIT record group — and reads them back
// (docs/decisions/0021). A packed message says so in EncodingHeader; a
// message without it is read as it is, as every message was before.
//
// Every byte a stream holds passes through the embedded server's block
// buffers, which it keeps for ten seconds after their last use: the bytes a
// burst writes are memory the worker holds. A batch of 50 jobs or a group
// of records repeats most of its text (the target, the issuer, the kind,
// the field names), and S2 takes it to a sixth to a tenth at a few
// microseconds a message.
package packed

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

const (
	// EncodingHeader names the encoding of a packed message's body.
	EncodingHeader = "Lw-Encoding"
	// S2 is the only encoding: github.com/klauspost/compress/s2's block
	// format (s2.Encode, s2.Decode).
	S2 = "s2"
	// MaxBody is the largest body Pack packs, and the largest an unpacked
	// body may claim: the server's default largest message, which a body
	// was bounded by before it was packed. A body claiming more is refused
	// before anything is allocated for it.
	MaxBody = 1 << 20
	// minBody is the smallest body worth packing: a single job or record
	// gains too little to pay for the header.
	minBody = 1 << 10
)

// ErrBody means a packed body cannot be read: an unknown or repeated
// encoding header, a body that is not S2, or one that claims more than
// MaxBody.
var ErrBody = errors.New("unreadable packed body")

// Pack returns body packed and true when that is worth it: bodies of
// minBody..MaxBody bytes that S2 shrinks by at least an eighth. Otherwise
// it returns body itself and false, to be sent without the header.
func Pack(body []byte) ([]byte, bool) {
	if len(body) < minBody || len(body) > MaxBody {
		return body, false
	}
	p := s2.Encode(nil, body)
	if len(p) > len(body)-len(body)/8 {
		return body, false
	}
	return p, true
}

// Unpack returns the body of a message with body data and EncodingHeader
// values header: data itself when there is none, data unpacked when it is
// S2; anything else is ErrBody.
func Unpack(data []byte, header []string) ([]byte, error) {
	switch len(header) {
	case 0:
		return data, nil
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d %s headers", ErrBody, len(header), EncodingHeader)
	}
	if header[0] != S2 {
		return nil, fmt.Errorf("%w: encoding %q", ErrBody, header[0])
	}
	n, err := s2.DecodedLen(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBody, err)
	}
	if n > MaxBody {
		return nil, fmt.Errorf("%w: it claims %d bytes, more than %d", ErrBody, n, MaxBody)
	}
	body, err := s2.Decode(make([]byte, n), data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBody, err)
	}
	return body, nil
}
