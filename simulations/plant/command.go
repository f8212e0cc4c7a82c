package plant

import (
	"fmt"
	"time"

	"github.com/sprout-iot/sprout/messages"
	"github.com/sprout-iot/sprout/messages/devicepb"
)

// command runs a Command at most once per id: a known id gets its earlier result again, an id
// still running gets nothing more (its result follows). Every outcome is remembered, BUSY and
// REJECTED too, so a retry needs a new id. Call with p.mu held.
func (p *Plant) command(cmd *devicepb.Command) {
	p.stats.CommandsReceived.Add(1)
	p.note(Observation{Kind: CommandReceived, Command: cmd})
	if p.cfg.IgnoreCommands {
		return
	}
	id := cmd.GetCommandId()
	if r, ok := p.results[id]; ok {
		p.stats.CommandsRepeated.Add(1)
		p.sendResult(r)
		return
	}
	if p.running[id] {
		return
	}
	if id == "" || len(id) > messages.MaxCommandIDBytes {
		p.finish(cmd, devicepb.CommandStatus_COMMAND_STATUS_REJECTED, fmt.Sprintf("command id must be 1..%d bytes", messages.MaxCommandIDBytes), 0)
		return
	}
	p.running[id] = true
	received := time.Now()
	if p.cfg.CommandDelay <= 0 {
		p.start(cmd, received)
		return
	}
	ctx := p.ctx
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sleep(ctx, p.cfg.CommandDelay)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.start(cmd, received)
		p.pushOut()
		p.mu.Unlock()
		p.emit()
	}()
}

// start applies the safety rules and begins the command. Call with p.mu held.
func (p *Plant) start(cmd *devicepb.Command, received time.Time) {
	const (
		done     = devicepb.CommandStatus_COMMAND_STATUS_DONE
		failed   = devicepb.CommandStatus_COMMAND_STATUS_FAILED
		rejected = devicepb.CommandStatus_COMMAND_STATUS_REJECTED
		busy     = devicepb.CommandStatus_COMMAND_STATUS_BUSY
	)
	if dl := time.Duration(cmd.GetDeadlineMs()) * time.Millisecond; dl > 0 && time.Since(received) > dl {
		p.finish(cmd, rejected, fmt.Sprintf("deadline of %v passed before start", dl), 0)
		return
	}
	switch cmd.GetKind() {
	case devicepb.CommandKind_COMMAND_KIND_WATER:
		now := p.simNow()
		p.soil.advance(now)
		minGap := time.Duration(p.dev.GetMinWaterIntervalS()) * time.Second
		empty := float64(p.dev.GetThresholds().GetTankEmptyPct())
		switch {
		case p.pumping:
			p.finish(cmd, busy, "pump is running", 0)
		case cmd.GetWaterMs() == 0:
			p.finish(cmd, rejected, "water_ms is 0", 0)
		case cmd.GetWaterMs() > p.dev.GetMaxWaterMs():
			p.finish(cmd, rejected, fmt.Sprintf("too long: water_ms %d above max %d", cmd.GetWaterMs(), p.dev.GetMaxWaterMs()), 0)
		case p.soil.tank <= empty:
			p.finish(cmd, rejected, fmt.Sprintf("tank empty: %.1f%% <= %.1f%%", p.soil.tank, empty), 0)
		case !p.lastPumpEnd.IsZero() && now.Sub(p.lastPumpEnd) < minGap:
			p.finish(cmd, rejected, fmt.Sprintf("too soon: %ds since last run, min %ds",
				int(now.Sub(p.lastPumpEnd).Seconds()), int(minGap.Seconds())), 0)
		case p.cfg.PumpFaultProbability > 0 && p.rng.Float64() < p.cfg.PumpFaultProbability:
			p.queueEvent(devicepb.EventKind_EVENT_KIND_PUMP_FAULT, "pump drew no current")
			p.finish(cmd, failed, "pump fault: pump drew no current", 0)
		default:
			p.pumping = true
			p.wg.Add(1)
			go p.pump(cmd)
		}
	case devicepb.CommandKind_COMMAND_KIND_READ_NOW:
		p.takeReading()
		p.finish(cmd, done, "", 0)
	case devicepb.CommandKind_COMMAND_KIND_SET_CONFIG:
		if cmd.GetConfig() == nil {
			p.finish(cmd, rejected, "SET_CONFIG without a config", 0)
			return
		}
		p.setDeviceConfig(cmd.GetConfig())
		p.finish(cmd, done, "", 0)
	case devicepb.CommandKind_COMMAND_KIND_REBOOT:
		if p.pumping {
			p.finish(cmd, busy, "pump is running", 0)
			return
		}
		p.finish(cmd, done, "rebooting", 0)
		if s := p.s; s != nil {
			p.flush()
			s.reboot = true
			_ = s.c.Close()
		}
	default:
		p.finish(cmd, rejected, fmt.Sprintf("unknown command kind %d", cmd.GetKind()), 0)
	}
}

// pump runs the pump for the command's water_ms (simulated) and reports what it moved.
func (p *Plant) pump(cmd *devicepb.Command) {
	defer p.wg.Done()
	p.mu.Lock()
	ctx := p.ctx
	d := p.simToReal(time.Duration(cmd.GetWaterMs()) * time.Millisecond)
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		p.mu.Lock()
		p.pumping = false
		p.mu.Unlock()
		return
	case <-t.C:
	}
	p.mu.Lock()
	p.soil.advance(p.simNow())
	ml := p.soil.water(cmd.GetWaterMs())
	p.pumping = false
	p.lastPumpEnd = p.soil.at
	p.finish(cmd, devicepb.CommandStatus_COMMAND_STATUS_DONE, fmt.Sprintf("watered %.0f ml", ml), uint32(ml+0.5))
	if empty := float64(p.dev.GetThresholds().GetTankEmptyPct()); p.soil.tank <= empty && !p.tankEmpty {
		p.tankEmpty = true
		p.queueEvent(devicepb.EventKind_EVENT_KIND_TANK_EMPTY, fmt.Sprintf("tank at %.1f%%", p.soil.tank))
	}
	p.pushOut()
	p.mu.Unlock()
	p.emit()
}

// finish records a command's result (remembering the id) and sends it. Call with p.mu held.
func (p *Plant) finish(cmd *devicepb.Command, st devicepb.CommandStatus, detail string, ml uint32) {
	r := &devicepb.CommandResult{CommandId: cmd.GetCommandId(), Status: st, Detail: truncate(detail), WateredMl: ml}
	id := cmd.GetCommandId()
	delete(p.running, id)
	if _, known := p.results[id]; !known {
		p.results[id] = r
		p.resultOrder = append(p.resultOrder, id)
		if len(p.resultOrder) > p.cfg.ResultMemory {
			delete(p.results, p.resultOrder[0])
			p.resultOrder = p.resultOrder[1:]
		}
	}
	p.stats.countCommand(st)
	p.sendResult(r)
}

// sendResult queues r on the connection, or keeps it for the next one. Call with p.mu held.
func (p *Plant) sendResult(r *devicepb.CommandResult) {
	s := p.s
	if s == nil || s.err != nil {
		if len(p.unsent) < p.cfg.ResultMemory {
			p.unsent = append(p.unsent, r)
		}
		return
	}
	s.out, _ = messages.AppendFrame(s.out, &devicepb.Frame{Body: &devicepb.Frame_CommandResult{CommandResult: r}})
	p.stats.commandResultsSent.Add(1)
	p.note(Observation{Kind: ResultSent, Result: r})
}
