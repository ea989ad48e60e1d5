// Package packed compresses the bodies of the worker's internal messages —
// a REVOKE batch, an AUDIT record or group of records — and reads them back
// (docs/decisions/0021, 0024). A packed message says so in EncodingHeader;
// a message without it is read as it is, as every message was before.
//
// Every byte a stream holds passes through the embedded server's block
// buffers, which it keeps for ten seconds after their last use: the bytes a
// burst writes are memory the worker holds. A batch of 50 jobs or a group
// of records repeats most of its text (the target, the issuer, the kind,
// the field names), and S2 takes it to a sixth. A single record repeats
// little of itself but nearly all of the worker's vocabulary — its field
// names, record types, kinds, sources, outcomes and fixed phrases — so the
// worker packs with a dictionary of that vocabulary (dict1.txt): a single
// record to about a quarter of its size, a group to a seventh, at S2's
// speed.
package packed

import (
	_ "embed"
	"errors"
	"fmt"

	"github.com/klauspost/compress/s2"
)

const (
	// EncodingHeader names the encoding of a packed message's body.
	EncodingHeader = "Lw-Encoding"
	// S2 is github.com/klauspost/compress/s2's block format (s2.Encode,
	// s2.Decode), as the worker packed before dictionaries; still read.
	S2 = "s2"
	// S2Dict1 is S2's block format over dictionary 1 (dict1.txt, its
	// repeat offset dict1Repeat): what Pack writes. A dictionary is never
	// changed once released — messages packed with it stay in the streams
	// — and a new one takes a new name.
	S2Dict1 = "s2-dict1"
	// MaxBody is the largest body Pack packs, and the largest an unpacked
	// body may claim: the server's default largest message, which a body
	// was bounded by before it was packed. A body claiming more is refused
	// before anything is allocated for it.
	MaxBody = 1 << 20
	// minBody is the smallest body worth packing: below it the header
	// costs more than packing saves.
	minBody = 128
)

// dict1Text is dictionary 1: a job and records of each common shape as
// the worker writes them, with neutral values, the most frequent last
// (S2 reaches nearer bytes of a dictionary with shorter copies).
//
//go:embed dict1.txt
var dict1Text []byte

// dict1Repeat is dictionary 1's starting repeat offset: where its last
// record begins.
const dict1Repeat = 3084

var dict1 = s2.MakeDictManual(dict1Text, dict1Repeat)

// ErrBody means a packed body cannot be read: an unknown or repeated
// encoding header, a body that is not S2, or one that claims more than
// MaxBody.
var ErrBody = errors.New("unreadable packed body")

// Pack returns body packed and its encoding (S2Dict1) when that is worth
// it: bodies of minBody..MaxBody bytes that it shrinks by at least an
// eighth. Otherwise it returns body itself and "", to be sent without the
// header.
func Pack(body []byte) ([]byte, string) {
	if len(body) < minBody || len(body) > MaxBody {
		return body, ""
	}
	p := dict1.Encode(nil, body)
	if len(p) > len(body)-len(body)/8 {
		return body, ""
	}
	return p, S2Dict1
}

// Unpack returns the body of a message with body data and EncodingHeader
// values header: data itself when there is none, data unpacked when it is
// S2 or S2Dict1; anything else is ErrBody.
func Unpack(data []byte, header []string) ([]byte, error) {
	switch len(header) {
	case 0:
		return data, nil
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d %s headers", ErrBody, len(header), EncodingHeader)
	}
	decode := s2.Decode
	switch header[0] {
	case S2:
	case S2Dict1:
		decode = dict1.Decode
	default:
		return nil, fmt.Errorf("%w: encoding %q", ErrBody, header[0])
	}
	n, err := s2.DecodedLen(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBody, err)
	}
	if n > MaxBody {
		return nil, fmt.Errorf("%w: it claims %d bytes, more than %d", ErrBody, n, MaxBody)
	}
	body, err := decode(make([]byte, n), data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBody, err)
	}
	return body, nil
}
