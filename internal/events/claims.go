package events

import (
	"encoding/json"
	"errors"
	"math"
	"time"
)

// Audiences reads a JWT's aud: a string or an array of strings.
func Audiences(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 {
		return nil, errors.New("missing")
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errors.New("neither a string nor an array of strings")
	}
	return many, nil
}

// UnixTime reads a JWT NumericDate; absurd values (NaN, infinities, beyond
// ±30,000 years) are the zero time, which no validity check accepts.
func UnixTime(f float64) time.Time {
	if math.IsNaN(f) || math.IsInf(f, 0) || f > 1e12 || f < -1e12 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
