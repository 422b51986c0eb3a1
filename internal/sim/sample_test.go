package sim

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mdeflow/mdeflow/internal/mde"
)

func TestSampleTenantInvariants(t *testing.T) {
	now := testStart
	tn := SampleTenant(now)
	if len(tn.Alerts) < 30 || len(tn.Machines) < 12 {
		t.Fatalf("%d alerts, %d machines", len(tn.Alerts), len(tn.Machines))
	}
	machines := map[string]mde.Machine{}
	for _, m := range tn.Machines {
		if err := mde.ValidateMachineID(m.ID); err != nil || strings.ToLower(m.ID) != m.ID {
			t.Errorf("machine id %q", m.ID)
		}
		machines[m.ID] = m
	}
	if len(machines) != len(tn.Machines) {
		t.Error("duplicate machine ids")
	}
	sev := map[string]int{}
	cats, sources, kinds := map[string]bool{}, map[string]bool{}, map[string]bool{}
	highPerMachine := map[string]int{}
	ids := map[string]bool{}
	hexRe := regexp.MustCompile(`^[0-9a-f]+$`)
	updatedLater := 0
	for _, a := range tn.Alerts {
		if err := mde.ValidateAlertID(a.ID); err != nil || ids[a.ID] {
			t.Errorf("alert id %q invalid or duplicate", a.ID)
		}
		ids[a.ID] = true
		if _, ok := machines[a.MachineID]; !ok {
			t.Errorf("alert %s names unknown machine %s", a.ID, a.MachineID)
		}
		if a.ComputerDNSName != machines[a.MachineID].ComputerDNSName {
			t.Errorf("alert %s computerDnsName mismatch", a.ID)
		}
		age := now.Sub(*a.AlertCreationTime)
		if age <= 0 || age > 50*time.Minute {
			t.Errorf("alert %s created %v before now", a.ID, age)
		}
		if a.LastUpdateTime.After(now) || a.LastUpdateTime.Before(*a.AlertCreationTime) {
			t.Errorf("alert %s lastUpdateTime %v outside [creation, now]", a.ID, a.LastUpdateTime)
		}
		if a.LastUpdateTime.Sub(*a.AlertCreationTime) >= time.Minute {
			updatedLater++
		}
		sev[a.Severity]++
		cats[a.Category] = true
		sources[a.DetectionSource] = true
		if a.Severity == "High" {
			highPerMachine[a.MachineID]++
		}
		for _, e := range a.Evidence {
			kinds[e.EntityType] = true
			if e.Sha1 != nil && (len(*e.Sha1) != 40 || !hexRe.MatchString(*e.Sha1)) {
				t.Errorf("alert %s sha1 %q", a.ID, *e.Sha1)
			}
			if e.Sha256 != nil && (len(*e.Sha256) != 64 || !hexRe.MatchString(*e.Sha256)) {
				t.Errorf("alert %s sha256 %q", a.ID, *e.Sha256)
			}
		}
	}
	// The counts the doc comment promises.
	if want := map[string]int{"High": 8, "Medium": 9, "Low": 7, "Informational": 5, "UnSpecified": 3}; !reflect.DeepEqual(sev, want) {
		t.Errorf("severity counts %v, want %v", sev, want)
	}
	for _, c := range []string{"CredentialAccess", "Execution", "Malware", "Ransomware", "LateralMovement", "CommandAndControl", "DefenseEvasion"} {
		if !cats[c] {
			t.Errorf("no %s alert", c)
		}
	}
	for _, s := range []string{"WindowsDefenderAtp", "WindowsDefenderAv", "CustomDetection", "AutomatedInvestigation", "WindowsDefenderSmartScreen"} {
		if !sources[s] {
			t.Errorf("no %s alert", s)
		}
	}
	for _, k := range []string{"File", "Process", "User", "Ip", "Url", "Registry"} {
		if !kinds[k] {
			t.Errorf("no %s evidence", k)
		}
	}
	if highPerMachine[SampleHotMachineID] < 3 {
		t.Errorf("hot machine has %d High alerts", highPerMachine[SampleHotMachineID])
	}
	dc := machines[SampleProtectedMachineID]
	if highPerMachine[dc.ID] < 1 || mde.Str(dc.RbacGroupName) != "Tier0-Servers" || !contains(dc.MachineTags, "protected") {
		t.Errorf("protected server: %d High, group %s, tags %v", highPerMachine[dc.ID], mde.Str(dc.RbacGroupName), dc.MachineTags)
	}
	if updatedLater < 3 {
		t.Errorf("only %d alerts updated after creation", updatedLater)
	}
	html := false
	for _, a := range tn.Alerts {
		if strings.Contains(a.Title, `<script>alert("x")</script>`) && strings.Contains(a.Title, `"Invoice.pdf"`) {
			html = true
		}
	}
	if !html {
		t.Error("no alert with an HTML/quote title")
	}
	for _, id := range []string{SampleLinuxMachineID, SampleLegacyMachineID} {
		m := machines[id]
		if osSupports(&m, mde.ActionTypeIsolate, mde.IsolationSelective) || !osSupports(&m, mde.ActionTypeIsolate, mde.IsolationFull) {
			t.Errorf("%s (%s %v): Selective must fail and Full work", m.ComputerDNSName, m.OSPlatform, m.OSBuild)
		}
	}

	// Deterministic for a given now; ids do not depend on now.
	a, _ := json.Marshal(SampleTenant(now).Alerts)
	b, _ := json.Marshal(tn.Alerts)
	if string(a) != string(b) {
		t.Error("SampleTenant is not deterministic")
	}
	later := SampleTenant(now.Add(time.Hour))
	if later.Alerts[5].ID != tn.Alerts[5].ID || later.Machines[5].ID != tn.Machines[5].ID {
		t.Error("ids depend on now")
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
