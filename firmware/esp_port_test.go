package firmware_test

// Static checks of the ESP-IDF port (port/esp-idf), which CI cannot build: what the field needs
// from it, checked in its source. The compile check against ESP-IDF's real headers is
// tools/esp-idf-check.sh (make -C firmware esp-check), run here too when IDF_PATH and
// NEWLIB_INCLUDE name the sources (see README.md).

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func espSource(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("port", "esp-idf", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func espMain(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("port", "esp-idf", "main", "*.c"))
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	return all.String()
}

// The factory identity is on a read-only partition of its own, and no path erases it.
func TestESPIdentityIsOnAReadOnlyPartitionNothingErases(t *testing.T) {
	parts := espSource(t, "partitions.csv")
	if !regexp.MustCompile(`(?m)^fctry,\s*data,\s*nvs,.*readonly\s*$`).MatchString(parts) {
		t.Fatalf("partitions.csv has no read-only fctry NVS partition:\n%s", parts)
	}
	src := espMain(t)
	if regexp.MustCompile(`nvs_flash_erase\s*\(\s*\)`).MatchString(src) {
		t.Error("nvs_flash_erase() erases the default partition wholesale: erase NVS_DEFAULT_PART_NAME by name")
	}
	for _, m := range regexp.MustCompile(`nvs_flash_erase_partition\s*\(([^)]*)\)`).FindAllStringSubmatch(src, -1) {
		if strings.TrimSpace(m[1]) != "NVS_DEFAULT_PART_NAME" {
			t.Errorf("erases partition %s: only the application's nvs may be erased", m[1])
		}
	}
	if !strings.Contains(src, `nvs_open_from_partition(FACTORY_PARTITION, FACTORY_NAMESPACE, NVS_READONLY`) {
		t.Error("the identity is not read read-only from the factory partition")
	}
	if !strings.Contains(espSource(t, "sdkconfig.defaults"), `CONFIG_PARTITION_TABLE_CUSTOM_FILENAME="partitions.csv"`) {
		t.Error("sdkconfig.defaults does not select partitions.csv")
	}
}

// Field robustness: no ESP_ERROR_CHECK (an abort, then a boot loop), task creation checked, the
// client on the task watchdog, the pump driven off before anything else.
func TestESPPortSurvivesTheField(t *testing.T) {
	src := espMain(t)
	if strings.Contains(src, "ESP_ERROR_CHECK") {
		t.Error("ESP_ERROR_CHECK aborts (and the pot reboot-loops) on a failure the port should retry")
	}
	for _, m := range regexp.MustCompile(`(?m)^.*xTaskCreate\(.*$`).FindAllString(src, -1) {
		if !strings.Contains(m, "!= pdPASS") {
			t.Errorf("xTaskCreate result unchecked: %s", strings.TrimSpace(m))
		}
	}
	if !strings.Contains(src, "esp_task_wdt_add(NULL)") || !strings.Contains(src, "esp_task_wdt_reset()") {
		t.Error("the client task is not on the task watchdog")
	}
	app := espSource(t, "main/app_main.c")
	body := app[strings.Index(app, "void app_main(void)\n{"):]
	if first := strings.Index(body, "esp_port_pump_off();"); first < 0 || first > strings.Index(body, "init_app_nvs") {
		t.Error("app_main does not drive the pump off before anything else")
	}
	wifi := espSource(t, "main/wifi.c")
	if !strings.Contains(wifi, "schedule_retry") || !strings.Contains(wifi, "CONFIG_SPROUT_WIFI_FAILS_BEFORE_PROVISIONING") {
		t.Error("WiFi rejoins without a delay, or never goes back to provisioning")
	}
	if !strings.Contains(espSource(t, "main/esp_port.c"), "ms > SPROUT_HARD_MAX_WATER_MS") {
		t.Error("the port's pump_start does not enforce the hard limit")
	}
	kconfig := espSource(t, "main/Kconfig.projbuild")
	for _, want := range []string{"IDF_TARGET_ESP32S3", "IDF_TARGET_ESP32C3", "SPROUT_PROV_BLE", "SPROUT_PROV_ESPTOUCH_V2",
		"SPROUT_HARD_MAX_WATER_MS", "SPROUT_BUTTON_GPIO"} {
		if !strings.Contains(kconfig, want) {
			t.Errorf("Kconfig.projbuild lacks %s", want)
		}
	}
	defaults := espSource(t, "sdkconfig.defaults")
	if regexp.MustCompile(`(?i)8 ?KB`).MatchString(defaults) && strings.Contains(defaults, "CONFIG_ESP_MAIN_TASK_STACK_SIZE=4096") &&
		!strings.Contains(defaults, "SPROUT_CLIENT_TASK_STACK") {
		t.Error("sdkconfig.defaults says 8 KB but sets 4 KB")
	}
}

// The compile check itself, when the ESP-IDF sources are on this machine.
func TestESPPortCompilesAgainstESPIDFHeaders(t *testing.T) {
	if os.Getenv("IDF_PATH") == "" || os.Getenv("NEWLIB_INCLUDE") == "" {
		t.Skip("IDF_PATH and NEWLIB_INCLUDE not set: make -C firmware esp-check says how")
	}
	out, err := exec.Command("tools/esp-idf-check.sh").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "compile against ESP-IDF") {
		t.Fatalf("esp-check: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// Firmware updates on the ESP32: Ed25519 from the espressif/libsodium managed component (not an
// optional header that silently turns updates off), the download margins measured by the port,
// and the Kconfig thresholds handed to the core.
func TestESPPortUpdatesWithLibsodiumAndMargins(t *testing.T) {
	manifest := espSource(t, "main/idf_component.yml")
	if !regexp.MustCompile(`(?m)^\s+espressif/libsodium:\s*"~1\.0\.\d+"`).MatchString(manifest) {
		t.Errorf("main/idf_component.yml does not depend on a pinned espressif/libsodium:\n%s", manifest)
	}
	ota := espSource(t, "main/esp_ota.c")
	if !strings.Contains(ota, "#include \"sodium.h\"") || strings.Contains(ota, "__has_include") {
		t.Error("esp_ota.c must include sodium.h unconditionally: a build without libsodium must fail, not ship without updates")
	}
	if !strings.Contains(ota, "crypto_sign_verify_detached(") {
		t.Error("esp_ota.c does not verify with crypto_sign_verify_detached")
	}
	port := espSource(t, "main/esp_port.c")
	for _, want := range []string{"out->ota_margins = ota_margins", "esp_wifi_sta_get_ap_info", "esp_get_free_heap_size", "esp_timer_is_active(c->pump_timer)"} {
		if !strings.Contains(port, want) {
			t.Errorf("esp_port.c: the download margins lack %s", want)
		}
	}
	kconfig := espSource(t, "main/Kconfig.projbuild")
	cmake := espSource(t, "components/sprout_core/CMakeLists.txt")
	for _, k := range []string{"SPROUT_OTA_MIN_SUPPLY_MV", "SPROUT_OTA_MIN_RSSI_DBM", "SPROUT_OTA_MIN_FREE_HEAP",
		"SPROUT_OTA_SAVE_EVERY_BYTES", "SPROUT_OTA_SAVE_EVERY_S", "SPROUT_OTA_RETRY_MIN_S", "SPROUT_OTA_RETRY_MAX_S"} {
		if !strings.Contains(kconfig, "config "+k+"\n") {
			t.Errorf("Kconfig.projbuild lacks %s", k)
		}
		if !strings.Contains(cmake, "${CONFIG_"+k+"}") {
			t.Errorf("components/sprout_core/CMakeLists.txt does not hand CONFIG_%s to the core", k)
		}
	}
}
