package netmsg

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCodeOf(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, CodeOK},
		{"error", NewError(CodeNotFound, "x"), CodeNotFound},
		{"wrapped error", fmt.Errorf("ctx: %w", Errorf(CodeAborted, "n=%d", 1)), CodeAborted},
		{"deadline", context.DeadlineExceeded, CodeDeadlineExceeded},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), CodeCanceled},
		{"closed", &CloseError{Reason: CloseNetworkError}, CodeUnavailable},
		{"not connected", ErrNotConnected, CodeUnavailable},
		{"other", errors.New("x"), CodeUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, CodeOf(tc.err))
		})
	}
}

func TestErrorMatching(t *testing.T) {
	t.Parallel()
	err := error(NewError(CodeUnimplemented, "no handler for x"))
	assert.ErrorIs(t, err, ErrNoHandler)
	assert.ErrorIs(t, err, NewError(CodeUnimplemented, ""))
	assert.NotErrorIs(t, err, NewError(CodeInternal, ""))
	assert.NotErrorIs(t, NewError(CodeInternal, "x"), ErrNoHandler)
	assert.ErrorIs(t, NewError(CodeDeadlineExceeded, "t"), context.DeadlineExceeded)
	assert.ErrorIs(t, NewError(CodeCanceled, "t"), context.Canceled)
	assert.Equal(t, "netmsg: not_found: gone", NewError(CodeNotFound, "gone").Error())
	assert.Equal(t, "netmsg: internal", NewError(CodeInternal, "").Error())
	assert.Equal(t, "code_99", Code(99).String())
}

func TestWireError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		code Code
		msg  string
	}{
		{NewError(CodeNotFound, "gone"), CodeNotFound, "gone"},
		{fmt.Errorf("wrap: %w", NewError(CodeAborted, "a")), CodeAborted, "a"},
		{errors.New("secret detail"), CodeInternal, "internal error"},
		{context.DeadlineExceeded, CodeDeadlineExceeded, "deadline exceeded"},
		{context.Canceled, CodeCanceled, "canceled"},
	}
	for _, tc := range cases {
		code, msg := wireError(tc.err)
		assert.Equal(t, tc.code, code, tc.err.Error())
		assert.Equal(t, tc.msg, msg, tc.err.Error())
	}
}

func TestHTTPError(t *testing.T) {
	t.Parallel()
	assert.Contains(t, (&HTTPError{Status: 429}).Error(), "429")
	assert.Contains(t, (&HTTPError{Status: 403, Message: "banned"}).Error(), "banned")
}
