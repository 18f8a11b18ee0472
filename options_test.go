package netmsg_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netmsg/netmsg"
	"github.com/netmsg/netmsg/serializer"
)

// namedSerializer is JSON under another name.
type namedSerializer struct {
	serializer.JSON
	name string
}

func (s namedSerializer) Name() string { return s.name }

func TestWithSerializerValidatesNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "a b", "json/v2", "x,y", "é"} {
		assert.Panics(t, func() { netmsg.WithSerializer(namedSerializer{name: name}) }, "%q", name)
	}
	assert.PanicsWithValue(t, `netmsg: WithSerializer: two serializers are named "json"`, func() {
		netmsg.WithSerializer(serializer.JSON{}, namedSerializer{name: "json"})
	})
	assert.PanicsWithValue(t, `netmsg: WithSerializer: serializer 1 is nil`, func() {
		netmsg.WithSerializer(serializer.JSON{}, nil)
	})
	assert.PanicsWithValue(t, `netmsg: WithSerializer: netmsg_test.namedSerializer: serializer: name "a b" has ' ' at byte 1; it must be an HTTP token (letters, digits and !#$%&'*+-.^_`+"`"+`|~)`, func() {
		netmsg.WithSerializer(namedSerializer{name: "a b"})
	})
	assert.NotPanics(t, func() {
		netmsg.WithSerializer(serializer.Protobuf{}, serializer.JSON{}, namedSerializer{name: "json.v2+x"})
	})
}
