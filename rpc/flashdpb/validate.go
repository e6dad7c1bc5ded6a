package flashdpb

import (
	"errors"
	"fmt"
	"unicode"
)

// Request limits shared by every server and the client library. The state
// machine enforces the same limits again (it is the authority), but requests
// that break them are refused before they cost a log entry.
const (
	MaxIDBytes      = 128
	MaxBatchClaims  = 4096
	MaxBatchDraws   = 4096 // draws in one DrawCardBatch (fsm: drawsPerBatchMax)
	MaxMessageBytes = 4 << 20
)

// ErrBadID: an ID is empty, too long or holds control characters.
var ErrBadID = errors.New("bad id")

// ValidateID checks one ID; what names it in the error ("user id").
func ValidateID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%w: %s is empty", ErrBadID, what)
	}
	if len(id) > MaxIDBytes {
		return fmt.Errorf("%w: %s is %d bytes, over %d", ErrBadID, what, len(id), MaxIDBytes)
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("%w: %s holds control or invalid characters", ErrBadID, what)
		}
	}
	return nil
}

// ValidateClaim checks one claim request's fields.
func ValidateClaim(c *ClaimRequest) error {
	for _, f := range []struct{ what, id string }{
		{"request id", c.GetRequestId()}, {"campaign id", c.GetCampaignId()},
		{"item id", c.GetItemId()}, {"user id", c.GetUserId()},
	} {
		if err := ValidateID(f.what, f.id); err != nil {
			return err
		}
	}
	if c.GetQuantity() == 0 {
		return fmt.Errorf("%w: quantity must be at least 1", ErrBadID)
	}
	return nil
}
